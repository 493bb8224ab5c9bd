"""What a grouped read may be grouped by (``--by``, the dashboard's tables), and the one rule that
checks a grouping: ``parse_groups``.

Besides the periods and dimensions of ``GROUPS``, ``tag:KEY`` groups by the value of the call's tag
``KEY`` (issue 15): the key keeps its case, and calls without it (or with an empty value) form the
group ``None``, shown ``(none)``, so a tag's groups add up to the total."""

from __future__ import annotations

from collections.abc import Sequence

from .tag_limits import MAX_KEY

__all__ = ["GROUPS", "TAG_PREFIX", "parse_groups", "tag_group", "tag_key"]

GROUPS = ("day", "week", "month", "model", "provider", "app", "user", "key")
TAG_PREFIX = "tag:"


def tag_group(key: str) -> str:
    """The group name of tag ``key``: ``tag:KEY``."""
    return TAG_PREFIX + key


def tag_key(group: str) -> str | None:
    """The tag key of a ``tag:KEY`` group, else None."""
    return group[len(TAG_PREFIX):] if group.startswith(TAG_PREFIX) else None


def _normal(g: str) -> str:
    g = g.strip()
    if g[:len(TAG_PREFIX)].lower() == TAG_PREFIX:
        return TAG_PREFIX + g[len(TAG_PREFIX):].strip()
    return g.lower()


def parse_groups(value: str | Sequence[str], *, allow_call: bool = False) -> tuple[str, ...]:
    """The one group rule: ``"day,model"`` (or a sequence) -> ``("day", "model")``, each a known group
    or ``tag:KEY`` (a key of 1 to 64 characters), none twice; with ``allow_call``, ``call`` alone (one
    row per call). ``ValueError`` says what is wrong without naming an option, so the CLI can put
    ``--by`` in front of it."""
    raw = value.split(",") if isinstance(value, str) else list(value)
    groups = tuple(_normal(g) for g in raw if g.strip()) if isinstance(value, str) else tuple(raw)
    choices = (*GROUPS, "tag:KEY", "call") if allow_call else (*GROUPS, "tag:KEY")
    if isinstance(value, str) and not groups:
        raise ValueError("needs at least one of: " + ", ".join(choices))
    if "call" in groups and allow_call:
        if groups != ("call",):
            raise ValueError("call cannot be combined with other groups")
        return groups
    for g in groups:
        key = tag_key(g) if isinstance(g, str) else None
        if key is not None:
            if not key:
                raise ValueError("tag: needs a key, as in tag:team")
            if len(key) > MAX_KEY:
                raise ValueError(f"tag key {key[:20]!r}... is longer than {MAX_KEY} characters")
        elif g not in GROUPS:
            raise ValueError(f"{g!r} is not a group: choose from {', '.join(choices)}")
    if len(set(groups)) != len(groups):
        raise ValueError("lists a group twice")
    return groups
