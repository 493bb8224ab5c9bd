"""What ``spendlog db status`` reports about a ledger, and the dashboard's one-line warning."""

from __future__ import annotations

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import URL, Engine

from .engine import make_engine, mask_url, resolve_url, sqlite_path
from .errors import DatabaseUnavailableError, first_line
from .migrate import current_revision, head_revision, newer_schema_message, schema_state
from .models import Completion
from .spool import dropped_count, rejected_count, rejected_path, spool_path, spooled_count

__all__ = ["database_status", "ledger_warnings"]

_BANNER_BYTES = 4 << 20  # the dashboard counts at most this much of each file per run


def database_status(url: str | URL | None = None) -> dict:
    """The ledger's URL, schema revision (``schema``: see ``db.migrate.schema_state``), rows, and
    the records not in it: ``spooled`` (waiting), ``rejected`` (quarantined), ``dropped``."""
    resolved = resolve_url(url)
    info = {
        "url": mask_url(resolved),
        "revision": None,
        "head": head_revision(),
        "schema": "none",
        "rows": None,
        "oldest_call": None,
        "oldest_rollup_hour": None,
        "spool": str(spool_path(resolved)),
        "spooled": spooled_count(resolved),
        "rejected_file": str(rejected_path(resolved)),
        "rejected": rejected_count(resolved),
        "dropped": dropped_count(resolved),
    }
    engine = make_engine(resolved, readonly=True, pool=False)
    try:
        with engine.connect() as conn:
            info["revision"] = current_revision(conn)
            info["schema"] = schema_state(info["revision"])
            if inspect(conn).has_table(Completion.__tablename__):
                info["rows"] = conn.scalar(select(func.count()).select_from(Completion))
                from .prune import oldest  # the oldest raw call and rollup hour (retention: db.prune)

                call, hour = oldest(conn)
                info["oldest_call"] = call.isoformat() if call is not None else None
                info["oldest_rollup_hour"] = hour.isoformat() if hour is not None else None
    except Exception as exc:  # translated once, here, for the user
        path = sqlite_path(resolved)
        if "unable to open database file" in str(exc) and path is not None and not path.exists():
            info["rows"] = 0  # no file yet: a new ledger
            return info
        raise DatabaseUnavailableError(f"cannot open {mask_url(resolved)}: {first_line(exc)}") from exc
    finally:
        engine.dispose()
    return info


def _records(n: int) -> str:
    return f"{n:,} record{'' if n == 1 else 's'} {'was' if n == 1 else 'were'}"


def ledger_warnings(url: str | URL | None = None, engine: Engine | None = None) -> list[str]:
    """Short sentences for a warning banner: a ledger migrated by a newer spendlog (asked of
    ``engine`` when given) and records that are not in the ledger. Empty when all is well; never
    raises (a ledger that cannot be read is reported elsewhere)."""
    resolved = resolve_url(url)
    out = []
    if engine is not None:
        try:
            with engine.connect() as conn:
                revision = current_revision(conn)
            if schema_state(revision) == "newer":
                out.append(newer_schema_message(resolved, revision))
        except Exception:  # noqa: BLE001 - the page shows an unreadable ledger on its own
            pass
    spooled = spooled_count(resolved, _BANNER_BYTES)
    rejected = rejected_count(resolved, _BANNER_BYTES)
    dropped = dropped_count(resolved)
    if spooled:
        out.append(f"{_records(spooled)} spooled, not written yet ({spool_path(resolved)})")
    if rejected:
        out.append(f"{_records(rejected)} rejected and set aside in {rejected_path(resolved)}")
    if dropped:
        out.append(f"{_records(dropped)} dropped: neither the database nor the spool could be written")
    if spooled or rejected or dropped:
        out.append("`spendlog db status` says more")
    return out
