"""The ledger's tables, as typed SQLAlchemy 2.0 models.

``completions`` is a public interface (finance and BI tools query it); the README documents it.
``rollup_hourly`` is derived: the writer maintains it in the same transaction as the raw insert,
and ``spendlog db rebuild-rollups`` rebuilds it from ``completions``. An hour whose sums for one key
would pass a column's range (int64 on SQLite: 9,223,372 USD) continues in another row for that
key, with ``bucket`` = the hour + 1 µs (+ 2 µs, ...): sum the rows, and floor a bucket to its hour.

Prices (issue 14, revision 0002): ``completions.cost_source`` says what ``cost_usd`` is
(``upstream``: the router's bill; ``estimated``: spendlog's price for the tokens; ``missing``:
none, NULL, never 0), ``price_source`` what priced the figures spendlog computed, and
``list_cost_usd`` the public list price. The rollup splits ``cost_usd`` into
``billed_cost_usd`` + ``estimated_cost_usd`` (always equal to it) and sums ``list_cost_usd``;
``calls_missing_cost`` is the count of unpriced calls (``cost_source = 'missing'``).

Tags (issue 15, revision 0004): ``rollup_tags`` is derived like ``rollup_hourly`` (same writer
transaction, same rebuild, same spill rows): per UTC hour x tag key x tag value x model x app, one
row holds the sums of the calls that carry that tag, so each call counts once per tag it has.
Calls without a key are in no row of that key: the read layer's ``(none)`` group is
``rollup_hourly``'s total minus the key's rows (``db.tag_reads``).

Daily rollups (revision 0007): ``rollup_daily`` and ``rollup_tags_daily`` are ``rollup_hourly`` and
``rollup_tags`` summed per UTC day, with the same columns (one mixin each) and keys; ``bucket`` is the
day's midnight, + 1 µs (2 µs, ...) for a day's spill rows. Kept in the same transactions from the
hourly rows (``db.daily``), so the read layer takes a range's whole days from them.
``rollup_tag_days`` (revision 0008) is ``rollup_tags_daily`` without model and app: one row per UTC
day x tag key x tag value, kept the same way, for the tag picker and the reads by one tag alone.

Budgets (issue 16, revision 0005): ``budgets`` holds each budget's line (exact USD), period, zone,
scope, thresholds and kind; ``budget_webhooks`` its delivery targets, in a table of their own
because a webhook URL is a secret (``spendlog db grant-readonly`` keeps the read-only role out of
it); ``alerts`` one row per (budget, period start, alert key) that ``budget check`` claims with an
INSERT before sending, so an alert fires once however many checks race (``db.budget_alerts``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import Money, UTCDateTime

__all__ = ["Base", "Completion", "RollupHourly", "RollupDaily", "RollupTags", "RollupTagsDaily", "RollupTagDays", "MonthClose", "MonthCloseTotal", "Budget",
           "BudgetWebhook", "Alert", "ROLLUP_DIMENSIONS", "ROLLUP_MEASURES", "SPEND_MEASURES", "PRICE_MEASURES",
           "MONEY_MEASURES", "COST_SOURCES", "TAG_DIMENSIONS", "TAG_DAY_DIMENSIONS", "TAG_MEASURES",
           "CLOSE_DIMENSIONS"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TagsJSON = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Completion(Base):
    """One row per HTTP attempt to an LLM endpoint."""

    __tablename__ = "completions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    request_id: Mapped[str | None] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(255))
    upstream: Mapped[str | None] = mapped_column(String(255))
    requested_model: Mapped[str | None] = mapped_column(String(255))
    model: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(255))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int | None] = mapped_column(BigInteger)
    completion_tokens: Mapped[int | None] = mapped_column(BigInteger)
    total_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cached_tokens: Mapped[int | None] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal | None] = mapped_column(Money())
    cost_source: Mapped[str] = mapped_column(String(16), default="missing")
    price_source: Mapped[str | None] = mapped_column(String(255))
    list_cost_usd: Mapped[Decimal | None] = mapped_column(Money())
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    app: Mapped[str | None] = mapped_column(String(255))
    user: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[dict[str, Any] | None] = mapped_column(TagsJSON)
    api_key_hint: Mapped[str | None] = mapped_column(String(32))
    # when the row reached the ledger (revision 0006, issue 17): the writer's insert sets it, so a
    # spooled record replayed days later carries its replay's time. NULL for rows stored before 0006,
    # which came before every month close and so are never late (db.closes)
    ingested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_completions_created_at", "created_at"),
        Index("ix_completions_model_created_at", "model", "created_at"),
        Index("ix_completions_app_created_at", "app", "created_at"),
        Index("ix_completions_user_created_at", "user", "created_at"),
        # the request log's ranked orders (biggest first) and request-id lookup (revision 0003). The
        # ranked ones are DESC NULLS LAST on PostgreSQL; SQLite cannot say NULLS LAST in an index and
        # sorts NULL lowest, so 0003 makes them plain there (alembic compares them on PostgreSQL only)
        *(Index(f"ix_completions_{name}", column.desc().nulls_last()) for name, column in (
            ("cost_usd", cost_usd), ("total_tokens", total_tokens), ("latency_ms", latency_ms))),
        Index("ix_completions_request_id", "request_id"),
    )


# Rollup dimensions are NOT NULL ('' stands for "none") so that the unique key works on every backend.
ROLLUP_DIMENSIONS = ("bucket", "model", "provider", "app", "user", "api_key_hint", "is_error")
# The sums every layer carries under the same names, in the same order: the rollup stores them,
# the read layer returns them (``queries.MEASURES``) and the grouped export writes them. Listed
# once, so a file's columns cannot drift from what the rollup holds.
SPEND_MEASURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "calls_missing_cost",
    "billed_cost_usd",
    "estimated_cost_usd",
    "list_cost_usd",
)
# What priced each call, per rollup row (revision 0002): ``cost_usd`` = ``billed_cost_usd`` (calls whose
# cost is the upstream's bill) + ``estimated_cost_usd`` (spendlog's estimates); ``list_cost_usd`` sums the
# list price of every call that has one, billed ones included. The count of unpriced calls is
# ``calls_missing_cost`` (cost_source 'missing', cost NULL). The read layer and the grouped exports
# carry all of them (issue 14, phase 2).
PRICE_MEASURES = ("billed_cost_usd", "estimated_cost_usd", "list_cost_usd")
ROLLUP_MEASURES = (*SPEND_MEASURES, "latency_ms_sum", "latency_count")
MONEY_MEASURES = frozenset({"cost_usd", *PRICE_MEASURES})
COST_SOURCES = ("upstream", "estimated", "missing")


class _Sums:
    """The measure columns every rollup carries (``ROLLUP_MEASURES``), declared once."""

    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    calls_missing_cost: Mapped[int] = mapped_column(BigInteger, default=0)
    billed_cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    estimated_cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    list_cost_usd: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    latency_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_count: Mapped[int] = mapped_column(BigInteger, default=0)


class _CallRollup(_Sums):
    """``rollup_hourly``'s columns (``ROLLUP_DIMENSIONS`` as the primary key, then the sums)."""

    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, sort_order=-2)
    model: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-1)
    provider: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-1)
    app: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-1)
    user: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-1)
    api_key_hint: Mapped[str] = mapped_column(String(32), primary_key=True, sort_order=-1)
    is_error: Mapped[bool] = mapped_column(Boolean, primary_key=True, sort_order=-1)


class RollupHourly(_CallRollup, Base):
    """Sums per UTC hour x model x provider x app x user x key x error flag."""

    __tablename__ = "rollup_hourly"


class RollupDaily(_CallRollup, Base):
    """``rollup_hourly`` per UTC day (revision 0007): ``bucket`` = the day's midnight (+ n µs for
    spill rows), the same keys and sums, kept in the same transactions (``db.daily``)."""

    __tablename__ = "rollup_daily"


# rollup_tags (revision 0004): hour x tag key x tag value x model x app; '' = unknown model / app
TAG_DIMENSIONS = ("bucket", "tag_key", "tag_value", "model", "app")
TAG_MEASURES = (*ROLLUP_MEASURES, "errors")


class _TagSums(_Sums):
    """A tag rollup's time and tag columns (``TAG_DAY_DIMENSIONS``), then ``TAG_MEASURES``."""

    bucket: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, sort_order=-3)
    tag_key: Mapped[str] = mapped_column(String(64), primary_key=True, sort_order=-2)
    tag_value: Mapped[str] = mapped_column(String(256), primary_key=True, sort_order=-2)
    errors: Mapped[int] = mapped_column(BigInteger, default=0, sort_order=1)


class _TagRollup(_TagSums):
    """``rollup_tags``' columns (``TAG_DIMENSIONS`` as the primary key, then ``TAG_MEASURES``)."""

    model: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-1)
    app: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-1)


class RollupTags(_TagRollup, Base):
    """Sums per UTC hour x tag key x tag value x model x app, of the calls carrying that tag."""

    __tablename__ = "rollup_tags"

    # the tag picker's values of one key, and a tag filter over a range
    __table_args__ = (Index("ix_rollup_tags_tag_key_tag_value_bucket", "tag_key", "tag_value", "bucket"),)


class RollupTagsDaily(_TagRollup, Base):
    """``rollup_tags`` per UTC day (revision 0007), as ``RollupDaily`` is to ``RollupHourly``."""

    __tablename__ = "rollup_tags_daily"

    # a tag filter over a range; one tag key with a model or an app filter (revision 0009)
    __table_args__ = (Index("ix_rollup_tags_daily_tag_key_tag_value_bucket", "tag_key", "tag_value", "bucket"),
                      Index("ix_rollup_tags_daily_tag_key_model_bucket", "tag_key", "model", "bucket"),
                      Index("ix_rollup_tags_daily_tag_key_app_bucket", "tag_key", "app", "bucket"))


# rollup_tag_days (revision 0008): UTC day x tag key x tag value, model and app summed away
TAG_DAY_DIMENSIONS = ("bucket", "tag_key", "tag_value")


class RollupTagDays(_TagSums, Base):
    """``rollup_tags_daily`` with model and app summed away (revision 0008): per UTC day x tag key x
    tag value (``bucket`` = midnight, + n µs for spill rows), for the tag picker and the reads by
    one tag that name no model or app (``db.daily``, ``db.plan``)."""

    __tablename__ = "rollup_tag_days"

    __table_args__ = (Index("ix_rollup_tag_days_tag_key_tag_value_bucket", "tag_key", "tag_value", "bucket"),)


# ---------------------------------------------------------------- month close (revision 0006, issue 17)

# The grain a close keeps: the local day in the close's zone x these dimensions ('' for unknown, as in
# the rollup). Any grouped export of the month over them (``export --as-closed``) is a sum of these rows.
CLOSE_DIMENSIONS = ("model", "provider", "app", "user", "api_key_hint")


class MonthClose(Base):
    """The close history: one row per ``spendlog close`` (``action`` 'close') and per ``--reopen``
    ('reopen', ``reopens`` = the close it ends). A month is closed when its latest row is a close.
    Never updated or deleted."""

    __tablename__ = "month_closes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    action: Mapped[str] = mapped_column(String(8))  # close | reopen
    tz: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())  # the month's [start, end) in UTC
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the close's instant: later rows are late
    recorded_by: Mapped[str] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))  # SHA-256 of the totals (db.closes.checksum)
    reopens: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_month_closes_month", "month", "id"),)


class MonthCloseTotal(Base):
    """A close's totals: ``SPEND_MEASURES`` per local day x ``CLOSE_DIMENSIONS``, exact."""

    __tablename__ = "month_close_totals"

    close_id: Mapped[int] = mapped_column(ForeignKey("month_closes.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(255), primary_key=True)
    app: Mapped[str] = mapped_column(String(255), primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_key_hint: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal] = mapped_column(Money())
    calls_missing_cost: Mapped[int] = mapped_column(BigInteger)
    billed_cost_usd: Mapped[Decimal] = mapped_column(Money())
    estimated_cost_usd: Mapped[Decimal] = mapped_column(Money())
    list_cost_usd: Mapped[Decimal] = mapped_column(Money())


class Budget(Base):
    """A spending line for a scope and a local calendar period (``db.budgets``)."""

    __tablename__ = "budgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    amount_usd: Mapped[Decimal] = mapped_column(Money())
    period: Mapped[str] = mapped_column(String(16))  # day | week | month | quarter | year
    tz: Mapped[str] = mapped_column(String(64), default="UTC")  # IANA name
    week_start: Mapped[int] = mapped_column(Integer, default=0)  # 0 = Monday ... 6 = Sunday
    # {"models": [...], "providers": [...], "apps": [...], "users": [...], "key_hints": [...],
    #  "tags": [[key, value], ...]}; absent or empty = everything
    scope: Mapped[dict[str, Any]] = mapped_column(JSON)
    thresholds: Mapped[list[int]] = mapped_column(JSON)  # percents, ascending
    forecast: Mapped[bool] = mapped_column(Boolean, default=False)
    hard: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BudgetWebhook(Base):
    """One delivery target of a budget. The URL is a secret: shown masked, never logged."""

    __tablename__ = "budget_webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)


class Alert(Base):
    """One alert of one budget's period: claimed (inserted) before it is sent, then its delivery."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(36), unique=True)  # stable, sent for idempotency
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    alert_key: Mapped[str] = mapped_column(String(32))  # "threshold:80" | "forecast"
    event: Mapped[str] = mapped_column(String(32))  # threshold_crossed | forecast_exceeded
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, fixed at the claim: every retry sends the same
    state: Mapped[str] = mapped_column(String(16))  # pending | sending | delivered | failed | no_target
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_to: Mapped[list[int]] = mapped_column(JSON)  # ids of the budget_webhooks that took it
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))  # masked: never holds a webhook URL

    __table_args__ = (UniqueConstraint("budget_id", "period_start", "alert_key", name="uq_alerts_claim"),)
