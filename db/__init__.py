"""spendlog's storage: engines and URLs, typed models, migrations, the background writer, and
the read queries shared by the dashboard, the export and the CLI."""

from .engine import default_db_url, make_engine, mask_url, resolve_url
from .errors import DatabaseUnavailableError, DatabaseURLError, StorageError
from .ids import uuid7
from .models import Base, Completion, RollupHourly
from .writer import Writer, flush, get_writer, submit

__all__ = [
    "Base",
    "Completion",
    "DatabaseURLError",
    "DatabaseUnavailableError",
    "RollupHourly",
    "StorageError",
    "Writer",
    "default_db_url",
    "flush",
    "get_writer",
    "make_engine",
    "mask_url",
    "resolve_url",
    "submit",
    "uuid7",
]
