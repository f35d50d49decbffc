"""Builders of bus messages for tests: markers for barriers (a message published after the thing under test;
once it is handled, everything before it on the same subscription has been)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from libs.common.contracts import Candle, Tick, utcnow

MARKER_SYMBOL = "MARKER/USDT"  # a symbol no test trades: the marker never mixes with what is recorded
_MARKER_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def marker_tick() -> Tick:
    """A tick whose content is the same every time (only its id and publish time differ)."""
    one = Decimal("1")
    return Tick(ts=utcnow(), symbol=MARKER_SYMBOL, bid=one, ask=one, last=one, volume=Decimal("0"))


def marker_candle(timeframe: str = "1m") -> Candle:
    one = Decimal("1")
    return Candle(
        ts=utcnow(),
        symbol=MARKER_SYMBOL,
        timeframe=timeframe,
        open_time=_MARKER_TIME,
        close_time=_MARKER_TIME,
        open=one,
        high=one,
        low=one,
        close=one,
        volume=Decimal("0"),
    )
