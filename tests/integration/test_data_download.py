"""`bnml data download` against the fake Binance (real ccxt, real paging): pages of 1000, resumable,
rate-limit aware, gap-checked; the file is the real BTCUSDT candles, bar for bar."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnml.commands.data import DownloadError, download, list_files, missing_ranges, parse_time
from libs.common import ohlcv
from libs.common.settings import load_settings
from tests.fakes.binance import FakeBinance

DATA = Path(__file__).resolve().parents[2] / "data" / "ohlcv"
H = 3_600_000
START = parse_time("2021-10-01")


@pytest.fixture
async def fake_binance():
    async with FakeBinance() as fake:
        yield fake
        assert fake.internal_errors == [], fake.internal_errors


def _settings(fake):
    s = load_settings()
    bcfg = s.market_data.binance.model_copy(
        update={"rest_url": fake.http_url, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}
    )
    return s.model_copy(update={"market_data": s.market_data.model_copy(update={"binance": bcfg})})


def _klines(fake) -> list:
    return fake.requests_to("/api/v3/klines")


def test_missing_ranges_are_head_holes_and_tail():
    assert missing_ranges([], 0, 5 * H, H) == [(0, 5 * H)]
    assert missing_ranges([H, 2 * H, 4 * H], 0, 6 * H, H) == [(0, H), (3 * H, 4 * H), (5 * H, 6 * H)]
    assert missing_ranges([0, H, 2 * H], 0, 3 * H, H) == []


async def test_download_pages_of_1000_equals_the_real_file_and_resumes_without_refetching(
    fake_binance, tmp_path
):
    settings, end = _settings(fake_binance), START + 2500 * H
    res = await download(settings, ["BTC/USDT"], "1h", START, end, tmp_path)
    r = res["BTC/USDT"]
    assert r["rows"] == 2500 and r["fetched"] == 2500 and r["gaps"] == []
    pages = _klines(fake_binance)
    assert [int(p.params["limit"]) for p in pages] == [1000, 1000, 1000]
    assert [int(p.params["startTime"]) for p in pages] == [START, START + 1000 * H, START + 2000 * H]
    got = ohlcv.load(tmp_path / "binance" / "BTCUSDT-1h.parquet", symbol="BTC/USDT")
    real = ohlcv.load(DATA / "BTCUSDT-1h.csv").between(START, end)
    assert got.frame.equals(real.frame)

    before = len(_klines(fake_binance))
    again = await download(settings, ["BTC/USDT"], "1h", START, end, tmp_path)
    assert again["BTC/USDT"]["fetched"] == 0 and len(_klines(fake_binance)) == before  # nothing refetched

    more = await download(settings, ["BTC/USDT"], "1h", START, end + 300 * H, tmp_path)
    new = _klines(fake_binance)[before:]
    assert more["BTC/USDT"]["fetched"] == 300 and [int(p.params["startTime"]) for p in new] == [end]
    listed = list_files(tmp_path)
    assert listed[0]["file"] == "BTCUSDT-1h.parquet" and listed[0]["rows"] == 2800 and listed[0]["gaps"] == 0


async def test_download_waits_out_429_and_short_418_and_still_gets_every_bar(fake_binance, tmp_path):
    fake_binance.faults.next("/api/v3/klines", "429", count=2, retry_after=0)
    fake_binance.faults.next("/api/v3/klines", "418", count=1, retry_after=1)
    res = await download(_settings(fake_binance), ["BTC/USDT"], "1h", START, START + 1500 * H, tmp_path)
    assert res["BTC/USDT"]["rows"] == 1500
    kinds = [k for k, _, _ in fake_binance.faults.fired]
    assert kinds == ["429", "429", "418"]
    refused = [r for r in _klines(fake_binance) if r.fault]
    ok = [r for r in _klines(fake_binance) if not r.fault]
    assert len(refused) == 3 and len(ok) == 2
    # the 418's Retry-After (1 s) was honoured: no request inside the ban
    ban_at = refused[-1].monotonic
    assert ok[0].monotonic - ban_at >= 0.9 or ok[1].monotonic - ban_at >= 0.9


async def test_a_long_ban_stops_with_the_reason_and_keeps_nothing_invented(fake_binance, tmp_path):
    fake_binance.faults.next("/api/v3/klines", "418", count=1, retry_after=3600)
    with pytest.raises(DownloadError, match="IP banned by the exchange \\(418\\) for 3600s"):
        await download(_settings(fake_binance), ["BTC/USDT"], "1h", START, START + 10 * H, tmp_path)
    assert not (tmp_path / "binance" / "BTCUSDT-1h.parquet").exists()


async def test_an_exchange_outage_is_reported_as_a_gap_and_pages_skip_it(fake_binance, tmp_path):
    hole = (START + 990 * H, START + 1020 * H)
    fake_binance.kline_gaps.append(hole)
    res = await download(_settings(fake_binance), ["BTC/USDT"], "1h", START, START + 2100 * H, tmp_path)
    r = res["BTC/USDT"]
    assert r["rows"] == 2070 and r["gaps"] == [(hole[0] - H, hole[1])]
    with pytest.raises(ohlcv.OhlcvError, match="gap: 30 bar"):
        ohlcv.load(tmp_path / "binance" / "BTCUSDT-1h.parquet")


async def test_an_unknown_symbol_is_refused_before_any_kline_request(fake_binance, tmp_path):
    with pytest.raises(DownloadError, match="NOPE/USDT: not a market"):
        await download(_settings(fake_binance), ["NOPE/USDT"], "1h", START, START + 10 * H, tmp_path)
    assert _klines(fake_binance) == []


async def test_a_run_stopped_by_a_ban_keeps_its_pages_and_the_next_run_fetches_only_the_rest(
    fake_binance, tmp_path
):
    settings, end = _settings(fake_binance), START + 2500 * H
    fake_binance.faults.next(
        "/api/v3/klines",
        "418",
        count=1,
        retry_after=3600,
        where=lambda p: int(p.get("startTime") or 0) > START,
    )
    with pytest.raises(DownloadError, match="418"):
        await download(settings, ["BTC/USDT"], "1h", START, end, tmp_path)
    kept = ohlcv.load(tmp_path / "binance" / "BTCUSDT-1h.parquet")
    assert kept.rows == 1000 and kept.span() == (START, START + 999 * H)
    before = len(_klines(fake_binance))
    res = await download(settings, ["BTC/USDT"], "1h", START, end, tmp_path)
    again = _klines(fake_binance)[before:]
    assert res["BTC/USDT"]["fetched"] == 1500 and res["BTC/USDT"]["rows"] == 2500
    assert int(again[0].params["startTime"]) == START + 1000 * H  # resumed where it stopped
