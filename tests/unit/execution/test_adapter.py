"""The one ccxt adapter: every ccxt exception class lands on the right BN-ML error, with secrets scrubbed."""

from __future__ import annotations

import ccxt.async_support as ccxt
import pytest

from libs.common.errors import OperationalError
from services.execution.adapter import (
    Banned,
    ClockSkew,
    ExchangeRejected,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    map_ccxt_error,
    scrub,
)

KEY, SECRET = "k" * 40, "s" * 40


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ccxt.RequestTimeout("binance POST https://api.binance.com/api/v3/order"), OutcomeUnknown),
        (ccxt.ExchangeNotAvailable("binance 503"), OutcomeUnknown),
        (ccxt.OperationFailed('binance {"code":-1006,"msg":"An unexpected response"}'), OutcomeUnknown),
        (ccxt.NetworkError("connection reset"), OutcomeUnknown),
        (ccxt.BadResponse("truncated"), OutcomeUnknown),
        (
            ccxt.InsufficientFunds('binance {"code":-2010,"msg":"Account has insufficient balance"}'),
            ExchangeRejected,
        ),
        (ccxt.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}'), ExchangeRejected),
        (ccxt.BadRequest('binance {"code":-1013,"msg":"Filter failure: NOTIONAL"}'), ExchangeRejected),
        (ccxt.BadSymbol("binance does not have market symbol FOO/BAR"), ExchangeRejected),
        (ccxt.OrderNotFound('binance {"code":-2013,"msg":"Order does not exist."}'), NotFound),
        (
            ccxt.InvalidNonce(
                'binance {"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}'
            ),
            ClockSkew,
        ),
        (ccxt.DDoSProtection("binance 429 Too Many Requests {}"), RateLimited),
        (ccxt.DDoSProtection("binance 418 I'm a Teapot {}"), Banned),
        (ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key"}'), OperationalError),
        (ccxt.ExchangeError('binance {"code":-1100,"msg":"Illegal characters"}'), ExchangeRejected),
    ],
)
def test_ccxt_exceptions_map_onto_bnml_errors(exc, expected):
    assert isinstance(map_ccxt_error(exc), expected)


def test_http_client_failure_wrapped_as_exchange_error_is_an_unknown_outcome():
    exc = ccxt.ExchangeError("binance POST https://api.binance.com/api/v3/order")
    exc.__cause__ = OSError("payload error")
    assert isinstance(map_ccxt_error(exc), OutcomeUnknown)


def test_rate_limit_carries_retry_after_header():
    err = map_ccxt_error(ccxt.DDoSProtection("binance 429 Too Many Requests"), headers={"Retry-After": "7"})
    assert isinstance(err, RateLimited) and err.retry_after_s == 7.0
    ban = map_ccxt_error(ccxt.DDoSProtection("binance 418 I'm a Teapot"), headers={"retry-after": "120"})
    assert isinstance(ban, Banned) and ban.retry_after_s == 120.0


def test_rejection_reason_is_binance_message_and_short():
    err = map_ccxt_error(
        ccxt.InsufficientFunds('binance {"code":-2010,"msg":"Account has insufficient balance"}')
    )
    assert err.reason == "insufficient_funds"
    err = map_ccxt_error(ccxt.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: LOT_SIZE"}'))
    assert err.reason == "invalid_order: Filter failure: LOT_SIZE"


def test_secrets_and_signatures_never_survive_in_messages():
    raw = (
        f"binance POST https://api.binance.com/api/v3/order?symbol=BTCUSDT&timestamp=1&signature="
        f"{'ab' * 32} apiKey={KEY} secret={SECRET}"
    )
    err = map_ccxt_error(ccxt.RequestTimeout(raw), secrets=(KEY, SECRET))
    text = str(err)
    assert KEY not in text and SECRET not in text and "ab" * 32 not in text and "signature=***" in text
    assert scrub("nothing secret", (KEY,)) == "nothing secret"


def test_non_ccxt_exceptions_pass_through_unchanged():
    exc = RuntimeError("bug")
    assert map_ccxt_error(exc) is exc


# -- typed answers ---------------------------------------------------------------------------------
def test_ccxt_orders_trades_and_balances_become_typed_values():
    from decimal import Decimal as D

    from services.execution.adapter import balances_from_ccxt, order_from_ccxt, trade_from_ccxt

    raw_trade = {
        "id": 7,
        "order": 42,
        "amount": 0.004,
        "price": "50000.1",
        "fee": {"cost": 0.02, "currency": "USDT"},
        "timestamp": 1767225600000,
        "takerOrMaker": "maker",
    }
    o = order_from_ccxt(
        {
            "id": 42,
            "clientOrderId": "bnml-x",
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": None,
            "status": "open",
            "amount": 0.01,
            "filled": 0.004,
            "price": 50000,
            "average": None,
            "trades": [raw_trade, {"id": None}],
        }
    )
    assert (o.id, o.client_order_id, o.side, o.type, o.status) == ("42", "bnml-x", "BUY", "LIMIT", "open")
    assert o.amount == D("0.01") and o.filled == D("0.004") and o.price == D("50000") and o.average is None
    assert o.trades == (trade_from_ccxt(raw_trade),)  # a trade without an id is no trade
    t = o.trades[0]
    assert (t.id, t.order, t.amount, t.price, t.fee_cost, t.fee_currency) == (
        "7", "42", D("0.004"), D("50000.1"), D("0.02"), "USDT"
    )  # fmt: skip
    assert t.timestamp_ms == 1767225600000 and t.is_maker
    bare = order_from_ccxt({"id": None, "clientOrderId": "", "price": 0, "average": 0})
    assert bare.id is None and bare.client_order_id is None and bare.price is None and bare.average is None
    assert bare.amount == 0 and bare.trades == ()
    bal = {
        "total": {"BTC": 1.5, "ETH": 0, "USDT": "10"},
        "free": {"BTC": 1, "USDT": 10},
        "used": {"BTC": 0.5},
    }
    assert balances_from_ccxt(bal) == {"BTC": (D("1"), D("0.5")), "USDT": (D("10"), D("0"))}


def test_only_temporary_errors_are_retried_for_queries():
    from libs.common.errors import TemporaryError
    from services.execution.adapter import is_retryable

    assert is_retryable(OutcomeUnknown("timeout")) and is_retryable(ClockSkew("-1021"))
    assert is_retryable(RateLimited("429", retry_after_s=1.0)) and is_retryable(TemporaryError("x"))
    assert not is_retryable(Banned("418", 5.0)) and not is_retryable(ExchangeRejected("no", "invalid_order"))
    assert not is_retryable(NotFound("-2013")) and not is_retryable(OperationalError("-2015"))


async def test_call_retrying_keeps_the_attempt_count_and_what_it_retries(monkeypatch):
    import asyncio

    from services.execution.live_client import BinanceClient

    slept: list[float] = []

    async def no_sleep(s: float) -> None:
        slept.append(s)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)

    class Cfg:
        unknown_backoff_max_s = 0.5

    broker = BinanceClient.__new__(BinanceClient)
    broker.cfg = Cfg()
    calls: list[str] = []
    script: list[BaseException | str] = []

    async def call(method: str, *args, **kwargs):
        calls.append(method)
        step = script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    broker.call = call

    script[:] = [OutcomeUnknown("t"), RateLimited("429", retry_after_s=2.0), "ok"]
    assert await broker.call_retrying("fetch_balance") == "ok"
    assert calls == ["fetch_balance"] * 3
    assert slept[1] == 2.0 and 0 < slept[0] <= 0.5  # Retry-After wins; else backoff with jitter, capped

    calls.clear()
    slept.clear()
    script[:] = [OutcomeUnknown("t")] * 5
    with pytest.raises(OutcomeUnknown):
        await broker.call_retrying("fetch_balance")
    assert calls == ["fetch_balance"] * 5 and len(slept) == 4  # five attempts, the last error raised

    calls.clear()
    script[:] = [ClockSkew("-1021"), "synced", "ok"]  # resynchronise, then ask again at once
    assert await broker.call_retrying("fetch_order") == "ok"
    assert calls == ["fetch_order", "load_time_difference", "fetch_order"]

    calls.clear()
    script[:] = [ExchangeRejected("no", "invalid_order")]  # a refusal is never asked again
    with pytest.raises(ExchangeRejected):
        await broker.call_retrying("fetch_order")
    assert calls == ["fetch_order"]
