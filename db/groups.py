"""What a grouped read may be grouped by (``--by``, the dashboard's tables), and the one rule that
checks a grouping: ``parse_groups``."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GROUPS", "parse_groups"]

GROUPS = ("day", "week", "month", "model", "provider", "app", "user", "key")


def parse_groups(value: str | Sequence[str], *, allow_call: bool = False) -> tuple[str, ...]:
    """The one group rule: ``"day,model"`` (or a sequence) -> ``("day", "model")``, each a known group,
    none twice; with ``allow_call``, ``call`` alone (one row per call). ``ValueError`` says what is wrong
    without naming an option, so the CLI can put ``--by`` in front of it."""
    raw = value.split(",") if isinstance(value, str) else list(value)
    groups = tuple(g.strip().lower() for g in raw if g.strip()) if isinstance(value, str) else tuple(raw)
    choices = (*GROUPS, "call") if allow_call else GROUPS
    if isinstance(value, str) and not groups:
        raise ValueError("needs at least one of: " + ", ".join(choices))
    if "call" in groups and allow_call:
        if groups != ("call",):
            raise ValueError("call cannot be combined with other groups")
        return groups
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"{g!r} is not a group: choose from {', '.join(choices)}")
    if len(set(groups)) != len(groups):
        raise ValueError("lists a group twice")
    return groups
