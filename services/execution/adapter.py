"""The ONE place ccxt's exceptions become BN-ML's (libs/common/errors.py), with secrets scrubbed.

What each class means for an order that was being placed:
- `OutcomeUnknown`   : the request may have been executed (timeout, 5xx, -1006/-1007, dropped connection):
                       look the order up by client order id, never send it again.
- `RateLimited`      : 429, refused before execution: wait `retry_after_s`, then the gate again, then retry.
- `ClockSkew`        : -1021, refused: resynchronise the clock (`load_time_difference`) before any retry.
- `Banned`           : 418, refused; nothing may be sent until `retry_after_s` has passed (halt and alert).
- `ExchangeRejected` : a definite refusal (insufficient funds, filter failure, bad symbol, ...): REJECTED.
- `NotFound`         : -2013/-2011, the exchange does not know the order (yet).
- `OperationalError` : authentication/permission problems: halt and alert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ccxt.async_support as ccxt

from libs.common.errors import InvalidInputError, OperationalError, TemporaryError


class OutcomeUnknown(TemporaryError):
    pass


class RateLimited(TemporaryError):
    pass


class ClockSkew(TemporaryError):
    pass


class Banned(OperationalError):
    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ExchangeRejected(InvalidInputError):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class NotFound(InvalidInputError):
    pass


_SIGNATURE = re.compile(r"(signature=)[0-9a-fA-F]+")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove request signatures and any secret value from a message."""
    text = _SIGNATURE.sub(r"\1***", text)
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text[:500]


def _retry_after(headers: dict | None) -> float | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == "retry-after":
            try:
                return max(0.0, float(v))
            except (TypeError, ValueError):
                return None
    return None


def _reason(exc: Exception, default: str) -> str:
    """A short, stable reason: Binance's message when the body carries one."""
    text = str(exc)
    m = re.search(r'"msg"\s*:\s*"([^"]{1,200})"', text)
    return f"{default}: {m.group(1)}" if m else default


def map_ccxt_error(exc: Exception, *, secrets: Iterable[str] = (), headers: dict | None = None) -> Exception:
    """ccxt exception -> BN-ML error (see the module docstring). Anything else is returned as it is."""
    msg = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, ccxt.OrderNotFound):
        return NotFound(msg)
    if isinstance(exc, ccxt.InsufficientFunds):
        return ExchangeRejected(msg, "insufficient_funds")
    if isinstance(exc, ccxt.DDoSProtection):
        retry = _retry_after(headers)
        if " 418 " in f" {exc} ":
            return Banned(msg, retry)
        return RateLimited(msg, retry_after_s=retry)
    if isinstance(exc, ccxt.InvalidNonce):
        return ClockSkew(msg)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.AccountSuspended):
        return OperationalError(msg)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.BadSymbol | ccxt.OperationRejected):
        return ExchangeRejected(msg, _reason(exc, "invalid_order"))
    if isinstance(exc, ccxt.OperationFailed):  # network errors, timeouts, 5xx, -1006/-1007, bad responses
        return OutcomeUnknown(msg)
    if isinstance(exc, ccxt.ExchangeError):
        if exc.__cause__ is not None:  # an HTTP client failure wrapped by ccxt: the request may have gone through
            return OutcomeUnknown(msg)
        return ExchangeRejected(msg, _reason(exc, "exchange_error"))
    if isinstance(exc, ccxt.BaseError):
        return OutcomeUnknown(msg)
    return exc
