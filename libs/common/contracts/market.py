"""Market data contracts: ticks, candles, per-symbol freshness and the traded universe."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import AwareDatetime, Field, model_validator

from libs.common.contracts.base import Message, Money

TickSource = Literal["synthetic", "replay", "binance"]
"""Where market data came from (a tick's, a candle's `source`)."""


class Tick(Message):
    """Best bid/ask and last trade for one symbol (ccxt form, e.g. `BTC/USDT`)."""

    symbol: str = Field(min_length=3, max_length=32, description="ccxt unified symbol, e.g. BTC/USDT")
    bid: Money = Field(gt=0)
    ask: Money = Field(gt=0)
    last: Money = Field(gt=0)
    volume: Money = Field(ge=0, description="Base-asset volume traded since the previous tick")
    source: TickSource = "synthetic"
    source_ts: AwareDatetime | None = Field(
        default=None,
        description="Time the exchange or the replayed file gives the data (ts = when published)",
    )

    @model_validator(mode="after")
    def _bid_not_above_ask(self) -> Tick:
        if self.bid > self.ask:
            raise ValueError(f"bid {self.bid} is above ask {self.ask}")
        return self


class Candle(Message):
    """An OHLCV bar; `closed` is true once the bar's interval has ended."""

    symbol: str = Field(min_length=3, max_length=32)
    timeframe: str = Field(pattern=r"^\d+[smhdw]$", description="e.g. 1m, 5m, 1h")
    open_time: AwareDatetime
    close_time: AwareDatetime
    open: Money = Field(gt=0)
    high: Money = Field(gt=0)
    low: Money = Field(gt=0)
    close: Money = Field(gt=0)
    volume: Money = Field(ge=0)
    closed: bool = True
    source: TickSource = "synthetic"

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> Candle:
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError("OHLC inconsistent: low/high do not bound open/close")
        return self


class MarketStatus(Message):
    """Freshness of one symbol's data; risk holds a stale symbol."""

    symbol: str = Field(min_length=3, max_length=32)
    status: Literal["fresh", "stale"]
    age_s: float = Field(ge=0, description="Seconds since the last update for the symbol")
    reason: str = ""


class UniverseChanged(Message):
    """The set of symbols market_data publishes, after a scan or a config change."""

    symbols: list[str]
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    reason: str = ""


class TickView(Protocol):
    """The fields of a tick the cores read (the signal engine, the paper exchange): the bus `Tick` has them,
    and so has the backtest's unvalidated replay tick (one process, nothing published)."""

    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def symbol(self) -> str: ...
    @property
    def bid(self) -> Decimal: ...
    @property
    def ask(self) -> Decimal: ...
    @property
    def last(self) -> Decimal: ...
    @property
    def volume(self) -> Decimal: ...


class CandleView(Protocol):
    """The fields of a candle the signal engine reads (the bus `Candle`, the backtest's replay candle)."""

    @property
    def id(self) -> str: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def symbol(self) -> str: ...
    @property
    def timeframe(self) -> str: ...
    @property
    def open_time(self) -> datetime: ...
    @property
    def closed(self) -> bool: ...
    @property
    def open(self) -> Decimal: ...
    @property
    def high(self) -> Decimal: ...
    @property
    def low(self) -> Decimal: ...
    @property
    def close(self) -> Decimal: ...
    @property
    def volume(self) -> Decimal: ...
