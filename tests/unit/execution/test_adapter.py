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
