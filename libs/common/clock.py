"""Time for shells: one clock per runtime, so a service can run on the wall clock or on a data clock.

Cores never read a clock (time is passed in). Shells ask their runtime's clock (`rt.clock.now()`) instead of
calling `utcnow()` or `time.monotonic()` themselves, so the same shell runs on the wall clock in paper and live
mode, on the replayed data's clock in replay mode, and on a `ManualClock` in tests and the backtest.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...


class WallClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests, the backtest's simulated time)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start
        self._origin = start

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._origin).total_seconds()

    def set(self, when: datetime) -> None:
        """Move to `when`; a clock never goes back."""
        if when < self._now:
            raise ValueError(f"clock cannot go back from {self._now.isoformat()} to {when.isoformat()}")
        self._now = when

    def advance(self, seconds: float) -> datetime:
        self.set(self._now + timedelta(seconds=seconds))
        return self._now


WALL = WallClock()
