"""Replay: each file format loads exactly, the quirky close_time row is normalised, the tick path is fixed."""

from decimal import Decimal as D

import polars as pl
import pytest

from libs.common.errors import ConfigurationError
from libs.common.settings.market_data import ReplaySettings
from services.market_data.candles import Bar
from services.market_data.replay import ReplayClock, ReplayFileError, bar_path, load_ohlcv
from services.market_data.sources import coarser_timeframes, load_replay
from tests.helpers import DATA

OHLCV = DATA / "ohlcv"
CSV = OHLCV / "BTCUSDT-1h.csv"


def _path_of(series, n=50):
    return [
        [
            (p.ts_ms, p.bid, p.ask, p.last, p.volume)
            for p in bar_path(series.bar(i), 4, D(1), series.price_places)
        ]
        for i in range(n)
    ]


def test_binance_csv_loads_every_row_and_normalises_the_odd_close_time():
    s = load_ohlcv(CSV, "BTC/USDT")
    assert s.timeframe == "1h" and len(s.rows) == 9504 and s.skipped_rows == []
    assert s.normalised_close_times == 1
    assert s.rows[0] == (
        1633046400000,
        D("43820.01"),
        D("44059"),
        D("43661.63"),
        D("43694.48"),
        D("2001.56071"),
    )
    assert s.price_places == 2
    odd = next(i for i, r in enumerate(s.rows) if r[0] == 1640318400000)
    assert s.bar(odd).close_time_ms == 1640318400000 + 3_599_999


@pytest.mark.parametrize("name,tf,rows", [("XRP_ETH-1m.json", "1m", 3560), ("XRP_ETH-5m.json", "5m", 712)])
def test_ccxt_json_loads_with_exact_decimals(name, tf, rows):
    s = load_ohlcv(OHLCV / name, "XRP/ETH")
    assert s.timeframe == tf and len(s.rows) == rows
    assert s.rows[0][1] == D("0.00141342")  # not a binary float
    assert s.price_places == 8


def test_parquet_loads_the_same_bars_as_the_csv(tmp_path):
    df = pl.read_csv(
        CSV,
        schema_overrides={
            "open": pl.Utf8,
            "high": pl.Utf8,
            "low": pl.Utf8,
            "close": pl.Utf8,
            "volume": pl.Utf8,
        },
    )
    pq = tmp_path / "btc.parquet"
    df.write_parquet(pq)
    a, b = load_ohlcv(CSV, "BTC/USDT"), load_ohlcv(pq, "BTC/USDT")
    assert a.rows == b.rows and a.timeframe == b.timeframe


def test_parquet_with_float_columns_and_datetime_index_loads(tmp_path):
    df = (
        pl.read_csv(CSV).head(100).with_columns(pl.from_epoch("open_time", time_unit="ms").alias("timestamp"))
    )
    pq = tmp_path / "f.parquet"
    df.drop("open_time", "close_time").write_parquet(pq)
    s = load_ohlcv(pq, "BTC/USDT")
    assert len(s.rows) == 100 and s.rows[0][0] == 1633046400000 and s.rows[0][1] == D("43820.01")


@pytest.mark.parametrize("name", ["BTCUSDT-1h.csv", "XRP_ETH-1m.json"])
def test_replay_path_is_deterministic(name):
    assert _path_of(load_ohlcv(OHLCV / name, "X/Y")) == _path_of(load_ohlcv(OHLCV / name, "X/Y"))


def test_parquet_replay_path_is_deterministic_and_equals_the_csv(tmp_path):
    df = pl.read_csv(CSV, schema_overrides={c: pl.Utf8 for c in ("open", "high", "low", "close", "volume")})
    df.write_parquet(tmp_path / "b.parquet")
    assert _path_of(load_ohlcv(tmp_path / "b.parquet", "X/Y")) == _path_of(load_ohlcv(CSV, "X/Y"))


def test_bar_path_visits_open_extremes_close_in_order_and_splits_volume():
    up = Bar("B/U", "1h", 0, 3_599_999, D("10"), D("12"), D("9"), D("11"), D("8"))
    p = bar_path(up, 4, D(0), 2)
    assert [x.last for x in p] == ["10.00", "9.00", "12.00", "11.00"]  # bullish: low first
    assert [x.ts_ms for x in p] == [0, 1_199_999, 2_399_999, 3_599_999]
    assert sum(D(x.volume) for x in p) == D("8")
    down = Bar("B/U", "1h", 0, 3_599_999, D("11"), D("12"), D("9"), D("10"), D("8"))
    assert [x.last for x in bar_path(down, 4, D(0), 2)] == ["11.00", "12.00", "9.00", "10.00"]
    assert [x.last for x in bar_path(down, 1, D(0), 2)] == ["10.00"]


def test_bar_path_spread_is_rounded_outward_and_never_crossed():
    bar = Bar(
        "B/U", "1h", 0, 3_599_999, D("0.00141342"), D("0.00141557"), D("0.00141266"), D("0.00141418"), D(1)
    )
    for x in bar_path(bar, 4, D(1), 8):
        assert D(x.bid) < D(x.ask) and D(x.bid) <= D(x.last) <= D(x.ask)


def test_replay_clock_scales_history_by_speed():
    assert ReplayClock(0, 0).due_s(3_600_000) == 0
    assert ReplayClock(0, 1).due_s(3_600_000) == 3600
    assert ReplayClock(0, 3600).due_s(3_600_000) == 1


def test_missing_replay_file_refuses_to_start_naming_the_key(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        load_replay(ReplaySettings(path=str(tmp_path / "nope.csv")))
    assert err.value.key == "market_data.replay.path"


def test_replay_path_default_is_relative_to_the_repo_root():
    s = load_replay(ReplaySettings())
    assert len(s.rows) == 9504


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "rows"}')
    with pytest.raises(ReplayFileError):
        load_ohlcv(bad, "X/Y")
    with pytest.raises(ConfigurationError):
        load_replay(ReplaySettings(path=str(bad)))


def test_invalid_rows_are_skipped_and_reported(tmp_path):
    f = tmp_path / "k.csv"
    f.write_text(
        "open_time,open,high,low,close,volume,close_time\n"
        "0,10,12,9,11,1,59999\n60000,10,9,12,11,1,119999\n120000,-1,1,1,1,1,179999\n180000,10,12,9,11,1,239999\n"
    )
    s = load_ohlcv(f, "X/Y", timeframe="1m")
    assert [r[0] for r in s.rows] == [0, 180000] and len(s.skipped_rows) == 2


def test_replay_builds_only_coarser_multiples_of_the_file_timeframe():
    assert coarser_timeframes(["1s", "1m", "4h", "1d", "90m"], "1h") == (["4h", "1d"], ["1s", "1m", "90m"])
