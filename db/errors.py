"""Storage errors shown to users. Inside the writer, storage failures are warnings, never raised."""

__all__ = ["StorageError", "DatabaseURLError", "DatabaseUnavailableError", "NewerSchemaError"]


class StorageError(Exception):
    """Base class for spendlog storage errors."""


class DatabaseURLError(StorageError, ValueError):
    """The database URL cannot be used (unparseable, unsupported backend)."""


class DatabaseUnavailableError(StorageError):
    """The database could not be reached or opened. The message names the URL, password masked."""


class NewerSchemaError(StorageError):
    """The database was migrated by a newer spendlog: its schema revision is unknown to this one.
    The writer spools until spendlog is upgraded; ``spendlog db upgrade`` refuses to downgrade."""
