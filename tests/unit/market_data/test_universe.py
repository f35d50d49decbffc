"""Universe scan: top-N USDT spot pairs by 24h quote volume; stable-to-stable and leveraged tokens dropped."""

import json

from services.market_data.universe import diff_universe, is_leveraged_token, select_universe
from tests.helpers import DATA


def _m(sym, *, spot=True, active=True, status="TRADING"):
    base, quote = sym.split("/")
    return {
        "symbol": sym,
        "base": base,
        "quote": quote,
        "spot": spot,
        "active": active,
        "info": {"status": status},
    }


MARKETS = {
    s: _m(s)
    for s in [
        "BTC/USDT",
        "ETH/USDT",
        "SOL/USDT",
        "USDC/USDT",
        "FDUSD/USDT",
        "BTCUP/USDT",
        "ETHDOWN/USDT",
        "BNBBULL/USDT",
        "JUP/USDT",
        "ETH/BTC",
        "BNB/USDT",
    ]
}
MARKETS["OLD/USDT"] = _m("OLD/USDT", status="BREAK")
MARKETS["BTC/USDT:USDT"] = {**_m("BTC/USDT"), "symbol": "BTC/USDT:USDT", "spot": False}
TICKERS = {
    s: {"quoteVolume": v}
    for s, v in {
        "BTC/USDT": 9e9,
        "ETH/USDT": 5e9,
        "SOL/USDT": 1e9,
        "USDC/USDT": 8e9,
        "FDUSD/USDT": 7e9,
        "BTCUP/USDT": 6e9,
        "ETHDOWN/USDT": 4e9,
        "BNBBULL/USDT": 3e9,
        "JUP/USDT": 2e8,
        "ETH/BTC": 9e9,
        "OLD/USDT": 9e9,
        "BTC/USDT:USDT": 9e10,
    }.items()
}


def test_top_n_by_quote_volume_excluding_stables_and_leveraged_tokens():
    res = select_universe(MARKETS, TICKERS, top_n=3)
    assert res.symbols == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert res.dropped["USDC/USDT"] == "stablecoin to stablecoin"
    assert (
        res.dropped["BTCUP/USDT"]
        == res.dropped["ETHDOWN/USDT"]
        == res.dropped["BNBBULL/USDT"]
        == "leveraged token"
    )
    assert (
        "OLD/USDT" not in res.symbols and "ETH/BTC" not in res.symbols and "BTC/USDT:USDT" not in res.symbols
    )


def test_jup_is_not_mistaken_for_a_leveraged_token():
    assert not is_leveraged_token("JUP", {"BTC", "ETH"})
    assert is_leveraged_token("BTCUP", {"BTC"})
    res = select_universe(MARKETS, TICKERS, top_n=10)
    assert "JUP/USDT" in res.symbols


def test_pairs_without_ticker_or_below_floor_are_dropped_and_exclude_list_applies():
    res = select_universe(
        MARKETS,
        {k: v for k, v in TICKERS.items() if k != "SOL/USDT"},
        top_n=10,
        min_quote_volume=1e9,
        exclude=["ETH/USDT"],
    )
    assert res.symbols == ["BTC/USDT"]
    assert res.dropped["SOL/USDT"] == "no 24h ticker" and res.dropped["ETH/USDT"] == "excluded by config"
    assert "below" in res.dropped["JUP/USDT"]


def test_ties_are_broken_by_symbol_so_the_scan_is_deterministic():
    tick = {s: {"quoteVolume": 1.0} for s in MARKETS}
    a = select_universe(MARKETS, tick, top_n=3).symbols
    assert a == sorted(a) and a == select_universe(dict(reversed(MARKETS.items())), tick, top_n=3).symbols


def test_empty_scan_gives_an_empty_list():
    assert select_universe(MARKETS, {}, top_n=5).symbols == []


def test_real_ccxt_markets_snapshot_keeps_only_spot_usdt():
    markets = json.loads((DATA / "binance_markets_ccxt.json").read_text())
    tickers = {s: {"quoteVolume": float(i)} for i, s in enumerate(markets)}
    res = select_universe(markets, tickers, top_n=50)
    assert set(res.symbols) == {
        "BTC/USDT",
        "ETH/USDT",
        "ADA/USDT",
        "LTC/USDT",
        "XRP/USDT",
        "DOGE/USDT",
        "TRX/USDT",
    }


def test_diff_reports_added_and_removed_in_order():
    assert diff_universe(["A/USDT", "B/USDT"], ["B/USDT", "C/USDT"]) == (["C/USDT"], ["A/USDT"])
    assert diff_universe([], ["A/USDT"]) == (["A/USDT"], [])


def test_only_binance_intervals_come_from_exchange_klines():
    from services.market_data.live import split_timeframes

    assert split_timeframes(["1s", "5s", "1m", "4h"], klines=True) == (["1s", "1m", "4h"], ["5s"])
    assert split_timeframes(["1s", "5s"], klines=False) == ([], ["1s", "5s"])
