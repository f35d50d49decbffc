"""The one OHLCV reader: real files load, and every kind of bad file is an error naming the file and row."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from libs.common.markets import DEFAULT_MARKETS_PATH, Markets
from libs.common.ohlcv import OhlcvError, load, to_parquet

DATA = Path(__file__).resolve().parents[3] / "data" / "ohlcv"
HEADER = "open_time,open,high,low,close,volume,close_time\n"


def _csv(tmp_path: Path, rows: list[tuple], name: str = "k.csv") -> Path:
    p = tmp_path / name
    p.write_text(HEADER + "".join(f"{t},{o},{h},{lo},{c},{v},{t + 59999}\n" for t, o, h, lo, c, v in rows))
    return p


def _bars(n: int, start: int = 0, step: int = 60_000) -> list[tuple]:
    return [(start + i * step, 10, 12, 9, 11, 1) for i in range(n)]


def test_vendored_files_load_with_their_documented_shape():
    btc = load(DATA / "BTCUSDT-1h.csv", symbol="BTC/USDT")
    assert btc.timeframe == "1h" and btc.rows == 9504 and btc.gaps == []
    assert btc.repairs == {"close_time_normalised": 1}
    assert btc.frame["open"][0] == pytest.approx(43820.01)
    xrp = load(DATA / "XRP_ETH-1m.json")
    assert xrp.timeframe == "1m" and xrp.rows == 3560


def test_parquet_round_trip_equals_the_csv(tmp_path):
    a = load(DATA / "BTCUSDT-1h.csv")
    to_parquet(a.frame, tmp_path / "b.parquet")
    b = load(tmp_path / "b.parquet")
    assert a.frame.equals(b.frame) and b.timeframe == "1h"


def test_unsorted_rows_are_an_error_naming_the_row(tmp_path):
    rows = _bars(5)
    rows[2], rows[3] = rows[3], rows[2]
    with pytest.raises(OhlcvError, match=r"k.csv: row 4: unsorted"):
        load(_csv(tmp_path, rows))


def test_identical_duplicates_are_dropped_and_counted(tmp_path):
    rows = _bars(5)
    rows.insert(3, rows[2])
    s = load(_csv(tmp_path, rows))
    assert s.rows == 5 and s.repairs["duplicates_dropped"] == 1


def test_conflicting_duplicates_are_an_error(tmp_path):
    rows = _bars(5)
    rows.insert(3, (rows[2][0], 10, 13, 9, 11, 1))
    with pytest.raises(OhlcvError, match=r"row 4: duplicate open_time 120000 with different values"):
        load(_csv(tmp_path, rows))


def test_a_gap_is_an_error_unless_allowed_then_counted(tmp_path):
    rows = _bars(3) + _bars(3, start=5 * 60_000)
    path = _csv(tmp_path, rows)
    with pytest.raises(
        OhlcvError, match=r"row 4: gap: 2 bar\(s\) missing between open_time 120000 and 300000"
    ):
        load(path)
    s = load(path, allow_gaps=True)
    assert s.gaps == [(120_000, 300_000)] and s.repairs["gaps"] == 1


def test_a_wrong_timeframe_is_an_error(tmp_path):
    path = _csv(tmp_path, _bars(5))
    with pytest.raises(OhlcvError, match="not on the 5m grid"):
        load(path, timeframe="5m")
    hourly_with_a_short_step = [
        (0, 10, 12, 9, 11, 1),
        (3_600_000, 10, 12, 9, 11, 1),
        (3_660_000, 10, 12, 9, 11, 1),
    ]
    with pytest.raises(OhlcvError, match="row 3: open_time 3660000 is not on the 1h grid"):
        load(_csv(tmp_path, hourly_with_a_short_step, "h.csv"), timeframe="1h")


def test_invalid_bars_are_errors_naming_the_row(tmp_path):
    rows = _bars(4)
    rows[1] = (60_000, 10, 9, 12, 11, 1)
    with pytest.raises(OhlcvError, match=r"row 2: low/high do not bound"):
        load(_csv(tmp_path, rows))
    rows[1] = (60_000, -1, 12, 9, 11, 1)
    with pytest.raises(OhlcvError, match=r"row 2: non-positive"):
        load(_csv(tmp_path, rows, "n.csv"))
    (tmp_path / "t.csv").write_text(HEADER + "0,10,12,9,11,1,59999\n60000,x,12,9,11,1,119999\n")
    with pytest.raises(OhlcvError, match=r"row 2: not numbers"):
        load(tmp_path / "t.csv")


def test_a_symbol_not_in_configs_markets_is_an_error_naming_the_file(tmp_path):
    known = Markets.load(DEFAULT_MARKETS_PATH).filters
    with pytest.raises(OhlcvError, match=r"XRP_ETH-1m.json: symbol XRP/ETH is not in configs/markets"):
        load(DATA / "XRP_ETH-1m.json", symbol="XRP/ETH", known_symbols=known)


def test_garbage_and_missing_files_are_clear_errors(tmp_path):
    (tmp_path / "g.json").write_text('{"not": "rows"}')
    with pytest.raises(OhlcvError, match="g.json: expected a JSON array"):
        load(tmp_path / "g.json")
    with pytest.raises(OhlcvError, match="file not found"):
        load(tmp_path / "none.parquet")
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(OhlcvError, match="x.parquet: needs open_time"):
        load(tmp_path / "x.parquet")
