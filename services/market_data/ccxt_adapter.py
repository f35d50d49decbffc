"""The one place market_data touches ccxt: building the Binance client and mapping its exceptions.

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

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import ccxt
import ccxt.pro as ccxtpro

from libs.common.ccxt_errors import ExchangeBanned, RateLimited, http_status, retry_after_s
from libs.common.errors import BnmlError, InvalidInputError, OperationalError, TemporaryError
from libs.common.settings.market_data import BinanceSettings

__all__ = [
    "ExchangeBanned",
    "RateLimited",
    "call",
    "error_kind",
    "http_status",
    "make_exchange",
    "map_error",
    "retry_after_s",
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


def error_kind(err: BnmlError) -> str:
    """The metric label and the back-off class of a mapped error."""
    if isinstance(err, ExchangeBanned):
        return "banned"
    if isinstance(err, RateLimited):
        return "rate_limited"
    if isinstance(err, TemporaryError):
        return "temporary"
    if isinstance(err, InvalidInputError):
        return "invalid"
    return "operational"


async def call(exchange: Any, fn: Callable[[], Awaitable[T]], now_ms: Callable[[], int]) -> T:
    """Run one ccxt call; any failure comes out as a mapped BN-ML error."""
    try:
        return await fn()
    except BnmlError:
        raise
    except Exception as exc:
        headers = getattr(exchange, "last_response_headers", None)
        raise map_error(exc, headers, now_ms()) from exc
