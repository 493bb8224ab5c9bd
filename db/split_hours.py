"""The split-hour correction of the grouped reads (``db.queries.grouped_totals``): ``SplitHours``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .sums import add_measures, zero_measures

__all__ = ["SplitHours"]


class SplitHours:
    """The split-hour correction, for zones whose local midnight falls inside a UTC hour.

    In Asia/Kolkata (+05:30) a local day starts at hh:30 UTC, so the hourly rollup cannot say
    which day each half of that hour belongs to. ``plan_grouped`` marks such hours (a part's
    ``split``: (hour, boundary) pairs): the rollup part's rows for them are *held* here instead
    of being added, and a raw part reads the smaller side of each hour from ``completions`` (added
    to its period like any row, and subtracted here). What is held at the end is the other side
    of the hour, added to that side's period by ``settle``.

    A rollup row's bucket may be its hour plus 1 µs (2 µs, ...): ``db.store`` spills a full
    rollup row into another one for the same key (docs/reliability.md). Rows are matched to their
    hour with ``floor_hour``, so the spill rows are held with their hour."""

    def __init__(self):
        self._held: dict[tuple[datetime, tuple], list] = {}  # (hour, dimension values) -> sums
        self._other_side: dict[datetime, datetime] = {}  # hour -> an instant in its unread side

    def start_part(self, part) -> set[datetime]:
        """Note what a part reads of the split hours; returns the hours it touches."""
        if part.source == "raw":
            for (hour, boundary), (lo, _) in zip(part.split, part.ranges):
                self._other_side[hour] = boundary if lo == hour else hour
        return {hour for hour, _ in part.split}

    def take(self, part, hour: datetime, dim_values: tuple, values: Sequence) -> bool:
        """Account for one row of a split ``hour``. True when the row is held (a rollup row, of
        ``rollup_hourly`` or ``rollup_tags``: not to be added yet); False for a raw row, which is
        then added to its period as usual."""
        held = self._held.setdefault((hour, dim_values), zero_measures())
        if part.source != "raw":
            add_measures(held, values)
            return True
        add_measures(held, values, -1)
        return False

    def settle(self, groups) -> None:
        """Add each split hour's unread side (its rollup sums minus the side read raw)."""
        for (hour, dim_values), rest in self._held.items():
            if any(rest):
                groups.add(self._other_side[hour], dim_values, rest)
