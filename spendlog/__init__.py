"""spendlog: usage and cost tracking for LLM APIs called through SolRouter."""

from spendlog.db.writer import flush

__version__ = "0.1.0"

__all__ = ["flush", "__version__"]
