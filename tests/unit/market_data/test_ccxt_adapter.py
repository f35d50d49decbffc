"""ccxt exceptions map onto the kernel's errors in one adapter; Retry-After and bans are read correctly."""

import ccxt
import pytest

from libs.common.errors import InvalidInputError, OperationalError, TemporaryError
from libs.common.settings.market_data import BinanceSettings
from services.market_data.ccxt_adapter import (
    ExchangeBanned,
    RateLimited,
    error_kind,
    make_exchange,
    map_error,
    retry_after_s,
)


def test_http_418_is_a_ban_with_retry_after():
    err = map_error(ccxt.DDoSProtection('binance 418 I\'m a teapot {"code":-1003}'), {"Retry-After": "120"})
    assert isinstance(err, ExchangeBanned) and isinstance(err, OperationalError)
    assert err.retry_after_s == 120 and error_kind(err) == "banned"


def test_ban_until_in_the_body_gives_the_wait_when_no_header():
    msg = 'binance 418 {"code":-1003,"msg":"Way too many requests; IP banned until 1700000060000."}'
    err = map_error(ccxt.DDoSProtection(msg), {}, now_ms=1_700_000_000_000)
    assert isinstance(err, ExchangeBanned) and err.retry_after_s == 60


@pytest.mark.parametrize(
    "exc",
    [ccxt.DDoSProtection("binance 429 Too Many Requests"), ccxt.RateLimitExceeded('binance {"code":-1003}')],
)
def test_rate_limits_are_temporary_with_retry_after(exc):
    err = map_error(exc, {"retry-after": "7"})
    assert isinstance(err, RateLimited) and isinstance(err, TemporaryError)
    assert err.retry_after_s == 7 and error_kind(err) == "rate_limited"


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.NetworkError("x"),
        ccxt.ExchangeNotAvailable("binance 503"),
        ccxt.RequestTimeout("t"),
        ccxt.BadResponse("not json"),
        ccxt.ExchangeError("e"),
        OSError("reset"),
    ],
)
def test_network_and_availability_errors_are_temporary(exc):
    err = map_error(exc)
    assert type(err) is TemporaryError and error_kind(err) == "temporary"


def test_bad_symbol_is_invalid_input_and_auth_is_operational():
    assert isinstance(map_error(ccxt.BadSymbol("binance does not have market symbol X/Y")), InvalidInputError)
    err = map_error(ccxt.AuthenticationError("binance key"))
    assert type(err) is OperationalError and error_kind(err) == "operational"


def test_retry_after_ignores_garbage():
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s(None) is None


async def test_exchange_points_at_the_configured_urls_and_is_rate_limited():
    ex = make_exchange(BinanceSettings(rest_url="http://127.0.0.1:1", ws_url="ws://127.0.0.1:2"))
    try:
        assert ex.enableRateLimit
        assert ex.urls["api"]["public"] == "http://127.0.0.1:1/api/v3"
        assert ex.urls["api"]["ws"]["spot"] == "ws://127.0.0.1:2/ws"
    finally:
        await ex.close()


@pytest.mark.parametrize(
    "raw,want",
    [
        (43820.01, "43820.01"),
        ("0.00141342", "0.00141342"),
        (1e-05, "0.00001"),
        (100.0, "100"),
        (0, "0"),
        (None, None),
        ("nan", None),
        (-1.0, None),
        (True, None),
        ("abc", None),
    ],
)
def test_ccxt_numbers_become_exact_decimal_strings_or_are_rejected(raw, want):
    from services.market_data.ccxt_adapter import dec_str as _dec_str

    assert _dec_str(raw) == want
