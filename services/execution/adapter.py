"""Execution's policy for ccxt's exceptions: which BN-ML error (libs/common/errors.py) each becomes for an
order, with secrets scrubbed. What is read off an exception (Retry-After, Binance's message, scrubbing, the
throttling errors) is the kernel's: `libs/common/ccxt_errors.py`.

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt

from libs.common.ccxt_errors import ExchangeBanned, RateLimited, binance_reason, retry_after_s, scrub
from libs.common.errors import InvalidInputError, OperationalError, TemporaryError

__all__ = [
    "Banned",
    "ExchangeOrder",
    "ExchangeTrade",
    "balances_from_ccxt",
    "ClockSkew",
    "ExchangeRejected",
    "NotFound",
    "OutcomeUnknown",
    "RateLimited",
    "is_retryable",
    "map_ccxt_error",
    "order_from_ccxt",
    "scrub",
    "trade_from_ccxt",
]

Banned = ExchangeBanned  # the kernel's 418 error (libs/common/ccxt_errors.py), under execution's name


class OutcomeUnknown(TemporaryError):
    pass


class ClockSkew(TemporaryError):
    pass


class ExchangeRejected(InvalidInputError):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class NotFound(InvalidInputError):
    pass


def map_ccxt_error(
    exc: Exception, *, secrets: Iterable[str] = (), headers: Mapping[str, Any] | None = None
) -> Exception:
    """ccxt exception -> BN-ML error (see the module docstring). Anything else is returned as it is."""
    msg = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, ccxt.OrderNotFound):
        return NotFound(msg)
    if isinstance(exc, ccxt.InsufficientFunds):
        return ExchangeRejected(msg, "insufficient_funds")
    if isinstance(exc, ccxt.DDoSProtection):
        retry = retry_after_s(headers)
        if " 418 " in f" {exc} ":
            return Banned(msg, retry)
        return RateLimited(msg, retry_after_s=retry)
    if isinstance(exc, ccxt.InvalidNonce):
        return ClockSkew(msg)
    if isinstance(exc, ccxt.AuthenticationError | ccxt.AccountSuspended):
        return OperationalError(msg)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.BadSymbol | ccxt.OperationRejected):
        return ExchangeRejected(msg, binance_reason(exc, "invalid_order"))
    if isinstance(exc, ccxt.OperationFailed):  # network errors, timeouts, 5xx, -1006/-1007, bad responses
        return OutcomeUnknown(msg)
    if isinstance(exc, ccxt.ExchangeError):
        if (
            exc.__cause__ is not None
        ):  # an HTTP client failure wrapped by ccxt: the request may have gone through
            return OutcomeUnknown(msg)
        return ExchangeRejected(msg, binance_reason(exc, "exchange_error"))
    if isinstance(exc, ccxt.BaseError):
        return OutcomeUnknown(msg)
    return exc


def is_retryable(exc: BaseException) -> bool:
    """May a query (never an order send) be asked again after this mapped error? The temporary ones (a
    timeout, a 5xx, 429, -1021 after a resync); never a refusal, a ban (418) or an authentication problem."""
    return isinstance(exc, TemporaryError) and not isinstance(exc, ExchangeBanned)


# -- ccxt's answers, normalised once into typed values ----------------------------------------------
ZERO = Decimal(0)


def _d(x: Any) -> Decimal:
    return Decimal(str(x)) if x is not None else ZERO


@dataclass(frozen=True)
class ExchangeTrade:
    """One trade (fill) as the exchange reports it."""

    id: str
    order: str | None  # the exchange's order id
    amount: Decimal
    price: Decimal
    fee_cost: Decimal
    fee_currency: str | None
    timestamp_ms: int | None
    is_maker: bool


@dataclass(frozen=True)
class ExchangeOrder:
    """One order as the exchange reports it (ccxt's unified order, typed)."""

    id: str | None
    client_order_id: str | None
    symbol: str | None
    side: str  # BUY | SELL ("" when ccxt did not say)
    type: str  # MARKET | LIMIT
    status: str | None  # ccxt's unified status: open, closed, canceled, expired, rejected
    amount: Decimal
    filled: Decimal
    price: Decimal | None
    average: Decimal | None
    trades: tuple[ExchangeTrade, ...] = ()


def trade_from_ccxt(t: Mapping[str, Any]) -> ExchangeTrade:
    fee = t.get("fee") or {}
    return ExchangeTrade(
        id=str(t["id"]),
        order=str(t["order"]) if t.get("order") is not None else None,
        amount=_d(t.get("amount")),
        price=_d(t.get("price")),
        fee_cost=_d(fee.get("cost")),
        fee_currency=fee.get("currency") or None,
        timestamp_ms=int(t["timestamp"]) if t.get("timestamp") else None,
        is_maker=t.get("takerOrMaker") == "maker",
    )


def order_from_ccxt(o: Mapping[str, Any]) -> ExchangeOrder:
    return ExchangeOrder(
        id=str(o["id"]) if o.get("id") is not None else None,
        client_order_id=o.get("clientOrderId") or None,
        symbol=o.get("symbol"),
        side=str(o.get("side") or "").upper(),
        type=str(o.get("type") or "limit").upper(),
        status=o.get("status"),
        amount=_d(o.get("amount")),
        filled=_d(o.get("filled")),
        price=_d(o.get("price")) or None,
        average=_d(o.get("average")) if o.get("average") else None,
        trades=tuple(trade_from_ccxt(t) for t in (o.get("trades") or []) if t.get("id")),
    )


def balances_from_ccxt(bal: Mapping[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    """asset -> (free, used) for every asset the exchange lists with a non-zero total."""
    total, free, used = bal.get("total") or {}, bal.get("free") or {}, bal.get("used") or {}
    return {a: (_d(free.get(a)), _d(used.get(a))) for a in total if _d(total[a]) != 0}
