"""What ``spendlog db status`` reports about a ledger."""

from __future__ import annotations

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import URL

from .engine import make_engine, mask_url, resolve_url, sqlite_path
from .errors import DatabaseUnavailableError
from .migrate import current_revision, head_revision
from .models import Completion
from .writer import dropped_count, spool_path, spooled_count

__all__ = ["database_status"]


def database_status(url: str | URL | None = None) -> dict:
    resolved = resolve_url(url)
    info = {
        "url": mask_url(resolved),
        "revision": None,
        "head": head_revision(),
        "rows": None,
        "spool": str(spool_path(resolved)),
        "spooled": spooled_count(resolved),
        "dropped": dropped_count(resolved),
    }
    engine = make_engine(resolved, readonly=True, pool=False)
    try:
        with engine.connect() as conn:
            info["revision"] = current_revision(conn)
            if inspect(conn).has_table(Completion.__tablename__):
                info["rows"] = conn.scalar(select(func.count()).select_from(Completion))
    except Exception as exc:  # noqa: BLE001 - translated once, here, for the user
        path = sqlite_path(resolved)
        if "unable to open database file" in str(exc) and path is not None and not path.exists():
            info["rows"] = 0  # no file yet: a new ledger
            return info
        raise DatabaseUnavailableError(f"cannot open {mask_url(resolved)}: {str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()
    return info
