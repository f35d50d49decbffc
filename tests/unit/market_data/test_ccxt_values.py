"""ccxt's ticker and OHLCV answers become typed values in the adapter; malformed ones are told apart."""

from decimal import Decimal

from services.market_data.ccxt_adapter import Kline, kline, klines, ticker, ticker_stamp, tickers


def test_a_ticker_becomes_exact_strings_with_its_volume_and_exchange_time():
    t = ticker(
        "BTC/USDT", {"bid": 100.5, "ask": "100.6", "last": 100.55, "baseVolume": 12.0, "timestamp": 1700}
    )
    assert t is not None
    assert (t.bid, t.ask, t.last, t.base_volume, t.source_ts_ms) == (
        "100.5",
        "100.6",
        "100.55",
        Decimal("12"),
        1700,
    )
    assert ticker("X", {"bid": 1, "ask": 2, "last": 1}).source_ts_ms is None


def test_tickers_that_make_no_sense_are_malformed():
    for raw in (
        {"bid": None, "ask": 1, "last": 1},
        {"bid": 2, "ask": 1, "last": 1},  # crossed
        {"bid": 0, "ask": 1, "last": 1},
        {"bid": 1, "ask": 2, "last": 0},
        {"bid": "x", "ask": 2, "last": 1},
    ):
        assert ticker("X", raw) is None


def test_an_answer_keeps_only_wanted_dict_entries_and_counts_the_malformed():
    raw = {
        "A/USDT": {"bid": 1, "ask": 2, "last": 1.5},
        "B/USDT": {"bid": 3, "ask": 2, "last": 1},
        "C/USDT": "not a dict",
        "D/USDT": {"bid": 1, "ask": 2, "last": 1.5},
    }
    valid, malformed = tickers(raw, ["A/USDT", "B/USDT", "C/USDT"])
    assert [t.symbol for t in valid] == ["A/USDT"] and malformed == 1
    assert tickers(None, ["A/USDT"]) == ([], 0)


def test_the_websocket_stamp_changes_with_any_published_field():
    a = {"timestamp": 1, "bid": 1, "ask": 2, "last": 1, "baseVolume": 5}
    assert ticker_stamp(a) == ticker_stamp(dict(a)) and ticker_stamp(a) != ticker_stamp({**a, "bid": 1.1})


def test_ohlcv_rows_become_klines_and_bars():
    k = kline([3_600_000, 1, 2, 0.5, 1.5, 10])
    assert k == Kline(3_600_000, (Decimal("1"), Decimal("2"), Decimal("0.5"), Decimal("1.5"), Decimal("10")))
    bar = k.bar("BTC/USDT", "1h", 3_600_000)
    assert (bar.open_time_ms, bar.close_time_ms, bar.close) == (3_600_000, 7_199_999, Decimal("1.5"))


def test_rows_that_are_no_rows_are_dropped_and_bad_values_are_malformed():
    assert kline([1, 2, 3]) is None and kline([None, 1, 1, 1, 1, 1]) is None and kline("x") is None
    assert kline([1, 1, 2, 0.5, 3, 1]).ohlcv is None  # close above high
    assert kline([1, 1, 2, 0, 1, 1]).ohlcv is None  # low 0
    assert kline([1, "x", 2, 1, 1, 1]).ohlcv is None
    assert [k.open_time_ms for k in klines([[1, 1, 1, 1, 1, 1], [2], [3, 1, 1, 1, 1, 1]])] == [1, 3]
