"""market_data settings: the source of prices (synthetic, replay, Binance public data), universe, staleness."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from libs.common.settings.base import Section
from libs.common.settings.shard import ShardSettings

TIMEFRAME_RE = re.compile(r"^[1-9]\d*[smhdw]$")
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,15}/[A-Z0-9]{2,10}")


class SyntheticSettings(Section):
    seed: int = Field(
        default=42, description="Same seed, same ticks (prices, volumes), whatever the wall clock"
    )
    ticks_per_s: float = Field(default=20.0, gt=0, le=1_000_000, description="Ticks per second per symbol")
    symbols_count: int = Field(
        default=0,
        ge=0,
        le=5000,
        description="0 = the top-level `symbols`; N = those plus generated SYNnnn/USDT up to N",
    )
    correlation: float = Field(
        default=0.6, ge=0, lt=1, description="Share of return variance from the common factor"
    )
    vol_bps_per_tick: float = Field(
        default=3.0, gt=0, le=500, description="Calm-regime volatility per tick, bps"
    )
    volatile_multiplier: float = Field(
        default=3.0, ge=1, le=50, description="Volatility x in the volatile regime"
    )
    regime_switch_prob: float = Field(
        default=0.002, ge=0, le=1, description="Chance per step the regime flips"
    )
    jump_prob: float = Field(default=0.0005, ge=0, le=1, description="Chance per tick per symbol of a jump")
    jump_bps: float = Field(default=150.0, ge=0, le=5000, description="Jump size (std dev), bps")
    spread_bps: float = Field(default=1.0, gt=0, le=500, description="Calm-regime bid/ask spread, bps")
    max_steps: int = Field(
        default=0, ge=0, description="Stop after this many steps (0 = never); benchmarks, tests"
    )
    slices_per_step: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Send each step in this many slices spread over its period, each stamped when sent "
        "(1 = every symbol at once; many symbols: a real feed's ticks do not all arrive together)",
    )


class ReplaySettings(Section):
    path: str = Field(
        default="data/ohlcv/BTCUSDT-1h.csv",
        description="OHLCV file (ccxt JSON, Binance kline CSV, Parquet), relative to the repo root",
    )
    format: Literal["auto", "csv", "json", "parquet"] = Field(
        default="auto", description="auto = from the suffix"
    )
    symbol: str = Field(default="BTC/USDT", description="Symbol the file holds")
    symbols: list[str] = Field(
        default_factory=list, description="Replay the file onto these symbols (empty = [symbol]); bench: 200"
    )
    timeframe: str = Field(
        default="", description="Bar length of the file (empty = inferred from timestamps)"
    )
    speed: float = Field(default=0.0, ge=0, description="x real time; 0 = as fast as possible")
    loop: bool = Field(default=False, description="Start again at the end of the file")
    ticks_per_candle: Literal[1, 4] = Field(
        default=4, description="4 = open, high/low, low/high, close; 1 = close"
    )
    spread_bps: float = Field(
        default=1.0, ge=0, le=500, description="Bid/ask spread put around replayed prices, bps"
    )
    data_clock: bool = Field(
        default=False,
        description="Run every service on the data's clock: messages are "
        "stamped with data time and shells read it (backtest parity); false = wall clock",
    )

    @field_validator("symbol")
    @classmethod
    def _symbol_ccxt(cls, v: str) -> str:
        return _ccxt_symbol(v)

    @field_validator("symbols")
    @classmethod
    def _symbols_ccxt(cls, v: list[str]) -> list[str]:
        return [_ccxt_symbol(s) for s in v]


def _ccxt_symbol(s: str) -> str:
    if not SYMBOL_RE.fullmatch(s):
        raise ValueError(f"{s!r} is not a ccxt spot symbol like BTC/USDT")
    return s


class BinanceSettings(Section):
    """Binance public data (live market data, allowed in paper mode). URLs override only for tests/fakes."""

    rest_url: str = Field(default="", description="Base REST URL (empty = api.binance.com); tests: the fake")
    ws_url: str = Field(
        default="", description="Base websocket URL (empty = stream.binance.com); tests: the fake"
    )
    use_websocket: bool = Field(default=True, description="false = REST polling only")
    klines: bool = Field(default=False, description="Subscribe to exchange klines for `candle_timeframes`")
    poll_interval_s: float = Field(default=2.0, gt=0, le=300, description="REST polling period (fallback), s")
    ws_retry_s: float = Field(
        default=15.0, gt=0, le=3600, description="How often to retry the socket while polling"
    )
    ws_silence_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Socket silent this long = down; poll REST (keep < stale_after_s)",
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="HTTP request timeout, s")
    markets_refresh_s: float = Field(
        default=3600.0, gt=0, description="Reload markets (filters, status) every, s"
    )
    backoff_initial_s: float = Field(default=1.0, gt=0, le=60, description="First back-off after an error, s")
    backoff_max_s: float = Field(default=60.0, gt=0, le=3600, description="Back-off ceiling, s")
    ban_default_s: float = Field(
        default=120.0, gt=0, le=86400, description="Ban length when a 418 has no Retry-After"
    )
    errors_before_alert: int = Field(
        default=5, ge=1, le=1000, description="Consecutive errors before a SEV-2 alert"
    )


class UniverseSettings(Section):
    mode: Literal["fixed", "top_volume"] = Field(
        default="fixed", description="fixed = top-level `symbols`; top_volume = scan (live)"
    )
    top_n: int = Field(default=20, ge=1, le=500, description="How many pairs the scan keeps")
    quote: str = Field(
        default="USDT", pattern=r"^[A-Z0-9]{2,10}$", description="Quote asset of the scanned pairs"
    )
    min_quote_volume: float = Field(default=0.0, ge=0, description="24h quote volume floor")
    exclude: list[str] = Field(default_factory=list, description="Symbols never traded (ccxt form)")
    refresh_s: float = Field(default=3600.0, gt=0, description="Scan every, s")


class MarketDataSettings(Section):
    stale_after_s: float = Field(
        default=10.0, gt=0, description="Seconds without an update before a symbol is stale"
    )
    frozen_after_s: float = Field(
        default=300.0, ge=0, description="Same price for this long while updates arrive = frozen (0 = off)"
    )
    status_interval_s: float = Field(
        default=5.0, gt=0, le=300, description="Publish every symbol's status every, s"
    )
    last_interval_ms: float = Field(
        default=100.0,
        gt=0,
        le=1000,
        description="md.last.<SYM> (newest tick, for risk and execution) at most every, ms"
        " (risk applies prices every 100 ms)",
    )
    candle_timeframes: list[str] = Field(
        default_factory=lambda: ["1s", "1m"], description="Closed candles published on md.candle.<SYM>.<tf>"
    )
    synthetic: SyntheticSettings = SyntheticSettings()
    replay: ReplaySettings = ReplaySettings()
    binance: BinanceSettings = BinanceSettings()
    universe: UniverseSettings = UniverseSettings()
    metrics_port: int = Field(
        default=9101,
        ge=0,
        le=65535,
        description="0 = any free port; sharded: each instance serves metrics_port + 100 x shard.index",
    )
    shard: ShardSettings = Field(
        default_factory=ShardSettings,
        description="The part of the universe this instance publishes (libs/common/shard.py)",
    )
    source_hint: Literal["auto"] = "auto"

    @field_validator("candle_timeframes")
    @classmethod
    def _timeframes_valid(cls, v: list[str]) -> list[str]:
        for tf in v:
            if not TIMEFRAME_RE.match(tf):
                raise ValueError(f"{tf!r} is not a timeframe like 1s, 5s, 1m, 1h, 1d")
        return v
