"""The one place market_data touches ccxt: building the Binance client, mapping its exceptions, and turning
its ticker and OHLCV answers into typed values (`Ticker`, `Kline`): nothing past this module reads a ccxt dict.

ccxt exceptions become the kernel's hierarchy (`libs/common/errors.py`):

| ccxt                                              | BN-ML                                  | policy            |
|---------------------------------------------------|----------------------------------------|-------------------|
| HTTP 418 (DDoSProtection "binance 418 ...")       | `ExchangeBanned` (OperationalError)    | stop until ban end, alert |
| HTTP 429, DDoSProtection, RateLimitExceeded       | `RateLimited` (TemporaryError)         | honour Retry-After |
| NetworkError, ExchangeNotAvailable, RequestTimeout, BadResponse, other ExchangeError | `TemporaryError` | back off with jitter |
| BadSymbol, BadRequest                             | `InvalidInputError`                    | do not retry as is |
| AuthenticationError, PermissionDenied             | `OperationalError`                     | alert             |

`Retry-After` comes from the response headers ccxt keeps (`last_response_headers`), or from
Binance's `IP banned until <ms>` message. What is read off an exception (status, Retry-After, the two
throttling errors) is the kernel's (`libs/common/ccxt_errors.py`); this module keeps market_data's policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import ccxt
import ccxt.pro as ccxtpro

from libs.common.ccxt_errors import ExchangeBanned, RateLimited, error_kind, http_status, retry_after_s
from libs.common.errors import BnmlError, InvalidInputError, OperationalError, TemporaryError
from libs.common.settings.market_data import BinanceSettings
from services.market_data.candles import Bar

__all__ = [
    "ExchangeBanned",
    "Kline",
    "RateLimited",
    "Ticker",
    "call",
    "dec_str",
    "error_kind",
    "http_status",
    "kline",
    "klines",
    "make_exchange",
    "map_error",
    "retry_after_s",
    "ticker_stamp",
    "tickers",
]

T = TypeVar("T")


def make_exchange(cfg: BinanceSettings) -> Any:
    """A `ccxt.pro.binance` (REST and websockets) for public spot data, rate limited, URLs overridable."""
    ex = ccxtpro.binance(
        {
            "enableRateLimit": True,
            "timeout": int(cfg.timeout_s * 1000),
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
            },
        }
    )
    if cfg.rest_url:
        base = cfg.rest_url.rstrip("/")
        api = ex.urls["api"]
        for key in ("public", "private"):
            api[key] = f"{base}/api/v3"
        api["v1"] = f"{base}/api/v1"
        api["sapi"] = f"{base}/sapi/v1"
    if cfg.ws_url:
        ws = cfg.ws_url.rstrip("/")
        ex.urls["api"]["ws"]["spot"] = ws if ws.endswith("/ws") else f"{ws}/ws"
    return ex


def map_error(
    exc: BaseException, headers: Mapping[str, Any] | None = None, now_ms: int | None = None
) -> BnmlError:
    """A ccxt (or network) exception as a BN-ML error; the message never carries credentials."""
    if isinstance(exc, BnmlError):
        return exc
    msg = f"{type(exc).__name__}: {str(exc)[:300]}"
    status = http_status(exc)
    if status == 418:
        return ExchangeBanned(msg, retry_after_s(headers, str(exc), now_ms))
    if status == 429 or isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RateLimited(msg, retry_after_s(headers, str(exc), now_ms))
    if isinstance(exc, ccxt.AuthenticationError):
        return OperationalError(msg)
    if isinstance(exc, ccxt.BadRequest):  # includes BadSymbol
        return InvalidInputError(msg)
    if isinstance(exc, ccxt.NetworkError | ccxt.BadResponse | ccxt.ExchangeError | ccxt.BaseError):
        return TemporaryError(msg)
    if isinstance(exc, OSError | TimeoutError | ValueError):
        return TemporaryError(msg)
    return OperationalError(msg)


async def call(exchange: Any, fn: Callable[[], Awaitable[T]], now_ms: Callable[[], int]) -> T:
    """Run one ccxt call; any failure comes out as a mapped BN-ML error."""
    try:
        return await fn()
    except BnmlError:
        raise
    except Exception as exc:
        headers = getattr(exchange, "last_response_headers", None)
        raise map_error(exc, headers, now_ms()) from exc


# -- answers as typed values ----------------------------------------------------------------------------
def dec_str(x: Any) -> str | None:
    """A ccxt number (float or str) as an exact non-negative decimal string, or None if it is not one."""
    if x is None or isinstance(x, bool):
        return None
    try:
        d = Decimal(repr(x)) if isinstance(x, float) else Decimal(str(x))
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or d < 0:
        return None
    return format(d.normalize(), "f") if d != 0 else "0"


@dataclass(frozen=True)
class Ticker:
    """One symbol's 24h ticker: bid <= ask, bid and last > 0 (exact decimal strings)."""

    symbol: str
    bid: str
    ask: str
    last: str
    base_volume: Decimal | None  # the rolling 24h base volume, when the exchange gave one
    source_ts_ms: int | None  # the exchange's time of the ticker, when it gave one


def ticker(symbol: str, raw: Mapping[str, Any]) -> Ticker | None:
    """A ccxt ticker dict as a `Ticker`, or None when its prices are missing or make no sense."""
    bid, ask, last = dec_str(raw.get("bid")), dec_str(raw.get("ask")), dec_str(raw.get("last"))
    if (
        bid is None
        or ask is None
        or last is None
        or Decimal(bid) <= 0
        or Decimal(last) <= 0
        or Decimal(bid) > Decimal(ask)
    ):
        return None
    base_vol = dec_str(raw.get("baseVolume"))
    src_ms = raw.get("timestamp")
    return Ticker(
        symbol,
        bid,
        ask,
        last,
        Decimal(base_vol) if base_vol is not None else None,
        int(src_ms)
        if isinstance(src_ms, int | float) and not isinstance(src_ms, bool) and src_ms > 0
        else None,
    )


def tickers(raw: Any, wanted: Iterable[str]) -> tuple[list[Ticker], int]:
    """The wanted symbols' tickers of a `fetch_tickers`/`watch_tickers` answer, and how many were malformed
    (entries that are not dicts, or symbols not wanted, are ignored)."""
    want = set(wanted)
    out: list[Ticker] = []
    malformed = 0
    for sym, t in (raw or {}).items():
        if sym not in want or not isinstance(t, dict):
            continue
        tk = ticker(sym, t)
        if tk is None:
            malformed += 1
        else:
            out.append(tk)
    return out, malformed


def ticker_stamp(raw: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells one websocket ticker update from the next (the cache keeps the last one per symbol)."""
    return (raw.get("timestamp"), raw.get("bid"), raw.get("ask"), raw.get("last"), raw.get("baseVolume"))


@dataclass(frozen=True)
class Kline:
    """One exchange kline: its open time and, when they make a bar (0 < low <= open, close <= high), its
    open/high/low/close/volume; `ohlcv` is None for a malformed row (counted, never published)."""

    open_time_ms: int
    ohlcv: tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None

    def bar(self, symbol: str, timeframe: str, tf_ms: int) -> Bar:
        assert self.ohlcv is not None
        o, h, low, c, v = self.ohlcv
        t0 = self.open_time_ms
        return Bar(symbol, timeframe, t0, t0 + tf_ms - 1, o, h, low, c, v)


def kline(row: Any) -> Kline | None:
    """A ccxt OHLCV row (`[open_ms, o, h, l, c, v]`) as a `Kline`; None when it is not a row at all."""
    if not isinstance(row, list | tuple) or len(row) < 6 or row[0] is None:
        return None
    vals = [dec_str(x) for x in row[1:6]]
    t0 = int(row[0])
    if any(v is None for v in vals):
        return Kline(t0, None)
    o, h, low, c, v = (Decimal(x) for x in vals if x is not None)
    if low <= 0 or not (low <= min(o, c) and h >= max(o, c)):
        return Kline(t0, None)
    return Kline(t0, (o, h, low, c, v))


def klines(rows: Any) -> list[Kline]:
    """The rows of an OHLCV answer that are rows, in order."""
    return [k for k in (kline(r) for r in rows or []) if k is not None]
