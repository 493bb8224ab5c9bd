"""FinOps FOCUS rows for ``spendlog export --format focus`` (the mapping: docs/focus.md).

Same read layer, same cell notation and neutralisation as every other export
(``spendlog.report.table.write_table``); only the columns differ. Charge periods are local
calendar periods (``spendlog.db.periods``); billing periods are UTC months.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TextIO
from zoneinfo import ZoneInfo

from spendlog.db.groups import tag_key
from spendlog.db.periods import PERIODS, get_zone, local_midnight, next_period_start
from spendlog.db.queries import Filters, grouped_totals, iter_call_chunks

from .table import chunked, write_table

__all__ = ["FOCUS_COLUMNS", "export_focus_grouped", "export_focus_calls"]

FOCUS_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "BillingAccountId",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeFrequency",
    "ChargeDescription",
    "PricingCategory",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SubAccountId",
    "SubAccountName",
    "ConsumedQuantity",
    "ConsumedUnit",
    "Tags",
    "x_Requests",
    "x_PromptTokens",
    "x_CompletionTokens",
    "x_CachedTokens",
    "x_ReasoningTokens",
    "x_CallsMissingCost",
    "x_Provider",
    "x_App",
    "x_User",
    "x_ApiKeyHint",
    "x_CallId",
    "x_CreatedAt",
    "x_StatusCode",
    "x_EstimatedCost",
    "x_CostSource",
    "x_PriceSource",
)
ROUTER = "SolRouter"


def _focus_instant(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_UTC = ZoneInfo("UTC")


def _money(value) -> Decimal:
    return value if value is not None else Decimal(0)


def _focus_row(*, cost, billed, estimated, listed, period: tuple[datetime, datetime], billing: tuple[datetime, datetime], model, provider,
               app, user, key, requests, prompt, completion, total, cached, reasoning, missing, tags,
               call_id=None, created_at=None, status=None, cost_source=None, price_source=None) -> list:
    # BilledCost: only the upstream's bills; EffectiveCost: bills + spendlog's estimates (docs/focus.md)
    cost, billed, estimated, listed = map(_money, (cost, billed, estimated, listed))
    labels = {"app": app, "user": user, "api_key_hint": key, **(tags or {})}
    labels = {k: v for k, v in labels.items() if v is not None}
    what = model or "unknown model"
    return [
        billed, cost, listed, cost, "USD", key or "unknown",
        *map(_focus_instant, (*billing, *period)),
        "Usage", "Usage-Based", f"{requests} LLM API call{'s' if requests != 1 else ''} to {what} via {ROUTER}",
        "Standard", ROUTER, provider or ROUTER, ROUTER, ROUTER, "AI and Machine Learning",
        model, model, "LLM model" if model else None, app, app,
        total, "Tokens", labels or None,
        requests, prompt, completion, cached, reasoning, missing, provider, app, user, key,
        call_id, created_at, status, estimated, cost_source, price_source,
    ]


def _billing_month(instant: datetime) -> tuple[datetime, datetime]:
    first = instant.astimezone(timezone.utc).date().replace(day=1)
    return local_midnight(first, _UTC), local_midnight(next_period_start(first, "month"), _UTC)


def export_focus_grouped(conn, filters: Filters | None, by: Sequence[str], tz: str, out: TextIO, *, progress=None,
                         totals=None) -> int:
    """Grouped totals as FOCUS rows; ``by`` needs exactly one of day, week or month. ``totals``: the
    rows to write instead of ``grouped_totals``' (a closed month's, ``report.closes``)."""
    periods = [g for g in by if g in PERIODS]
    if len(periods) != 1:
        raise ValueError("--format focus needs exactly one of day, week or month in --by (or --by call)")
    period = periods[0]
    zone = get_zone(tz)
    tag_groups = [(g, tag_key(g)) for g in by if tag_key(g) is not None]  # tag:KEY groups go to Tags

    def rows():
        for r in grouped_totals(conn, filters, by, tz) if totals is None else totals:
            start = local_midnight(r[period], zone)
            end = local_midnight(next_period_start(r[period], period), zone)
            yield _focus_row(
                cost=r["cost_usd"], billed=r["billed_cost_usd"], estimated=r["estimated_cost_usd"],
                listed=r["list_cost_usd"], period=(start, end), billing=_billing_month(start), model=r.get("model"),
                provider=r.get("provider"), app=r.get("app"), user=r.get("user"), key=r.get("key"),
                requests=r["requests"], prompt=r["prompt_tokens"], completion=r["completion_tokens"],
                total=r["total_tokens"], cached=r["cached_tokens"], reasoning=r["reasoning_tokens"],
                missing=r["calls_missing_cost"], tags={k: r[g] for g, k in tag_groups if r[g] is not None},
            )

    return write_table(chunked(rows()), FOCUS_COLUMNS, "focus", out, progress=progress)


_FOCUS_CALL_SOURCE = ("id", "created_at", "model", "provider", "app", "user", "api_key_hint", "tags", "status_code",
                      "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
                      "cost_usd", "cost_source", "list_cost_usd", "price_source")


def export_focus_calls(conn, filters: Filters, out: TextIO, *, progress=None, chunk_size: int = 10_000) -> int:
    """One FOCUS row per call, charged to the UTC hour of the call."""
    def chunks():
        for chunk in iter_call_chunks(conn, filters, _FOCUS_CALL_SOURCE, chunk_size=chunk_size):
            rows = []
            for (cid, created, model, provider, app, user, key, tags, status, prompt, completion, total, cached,
                 reasoning, cost, source, listed, priced) in chunk:
                hour = created.replace(minute=0, second=0, microsecond=0)
                estimate = source == "estimated"
                rows.append(_focus_row(
                    cost=cost, billed=None if estimate else cost, estimated=cost if estimate else None,
                    listed=listed, period=(hour, hour + timedelta(hours=1)), billing=_billing_month(hour), model=model,
                    provider=provider, app=app, user=user, key=key, requests=1, prompt=prompt,
                    completion=completion, total=total, cached=cached, reasoning=reasoning,
                    missing=int(cost is None), tags=tags if isinstance(tags, dict) else None,
                    call_id=cid, created_at=created, status=status, cost_source=source, price_source=priced,
                ))
            yield rows

    return write_table(chunks(), FOCUS_COLUMNS, "focus", out, progress=progress)
