"""Storage errors shown to users. Inside the writer, storage failures are warnings, never raised."""

__all__ = ["StorageError", "DatabaseURLError", "DatabaseUnavailableError", "NewerSchemaError", "first_line",
           "describe"]


class StorageError(Exception):
    """Base class for spendlog storage errors."""


class DatabaseURLError(StorageError, ValueError):
    """The database URL cannot be used (unparseable, unsupported backend)."""


class DatabaseUnavailableError(StorageError):
    """The database could not be reached or opened. The message names the URL, password masked."""


class NewerSchemaError(StorageError):
    """The database was migrated by a newer spendlog: its schema revision is unknown to this one.
    The writer spools until spendlog is upgraded; ``spendlog db upgrade`` refuses to downgrade."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, stripped (drivers add SQL and hints on later lines), the
    driver's own message for a SQLAlchemy error (``exc.orig``); the type's name when it is empty."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """``Type: first line`` (at most 300 characters), for a warning or a status's last error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}"[:300] if text else type(exc).__name__
