"""Time for shells: one clock per runtime, so a service can run on the wall clock or on a data clock.

Cores never read a clock (time is passed in). Shells ask their runtime's clock (`rt.clock.now()`) instead of
calling `utcnow()` or `time.monotonic()` themselves, so the same shell runs on the wall clock in paper and live
mode, on the replayed data's clock in replay mode, and on a `ManualClock` in tests and the backtest.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from libs.common.settings import BotSettings


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...

    def observe(self, when: datetime) -> None:
        """A data time seen in a message; only a data clock moves on it (others ignore it)."""
        ...


class WallClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def observe(self, when: datetime) -> None:
        return None


class DataClock:
    """The replayed data's clock (replay mode with `market_data.replay.data_clock`): `now()` is the newest data
    time seen in the messages the shell handles (ticks, candles, signals, verdicts, all stamped with data time
    by a replay on this clock); before the first, the wall clock. It never goes back. `monotonic()` stays the
    machine's: pacing, timeouts and polling periods are wall-clock matters."""

    def __init__(self) -> None:
        self._now: datetime | None = None

    def now(self) -> datetime:
        return self._now if self._now is not None else datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def observe(self, when: datetime) -> None:
        if self._now is None or when > self._now:
            self._now = when

    @property
    def started(self) -> bool:
        return self._now is not None


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

    def observe(self, when: datetime) -> None:
        return None  # moved only by whoever drives it


def clock_for(settings: BotSettings) -> Clock:
    """The clock a service's shell reads: the data's in replay mode with `market_data.replay.data_clock`,
    the wall clock otherwise."""
    if settings.paper_market_data_mode == "replay" and settings.market_data.replay.data_clock:
        return DataClock()
    return WALL


WALL = WallClock()
