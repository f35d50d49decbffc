"""Staleness alerting (pure): which freshness changes become SEV-2 alerts, each once until it clears."""

from services.market_data.staleness import StaleAlert, StalenessAlerts, StaleNote, StatusChange


def _alerts(actions):
    return [a for a in actions if isinstance(a, StaleAlert)]


def test_a_known_symbol_going_stale_alerts_once_and_clears_with_a_line():
    a = StalenessAlerts(stale_after_s=5.0, started=0.0, mode="live")
    a.on_change(StatusChange("BTC/USDT", "fresh", 0.1, ""))
    first = _alerts(a.on_pass(["BTC/USDT"], 10.0, has_symbols=True, replay_done=False))
    assert [x.dedup_key for x in first] == ["market_data:stale"] and first[0].severity == "SEV-2"
    assert "BTC/USDT" in first[0].detail and "> 5s" in first[0].detail
    assert a.on_pass(["BTC/USDT"], 11.0, has_symbols=True, replay_done=False) == []  # once
    assert a.on_pass([], 12.0, has_symbols=True, replay_done=False) == [
        StaleNote("info", "market data fresh again")
    ]
    assert _alerts(a.on_pass(["BTC/USDT"], 13.0, has_symbols=True, replay_done=False))  # and again later


def test_a_symbol_never_fresh_is_not_a_stale_alert_but_no_data_is_after_three_periods():
    a = StalenessAlerts(stale_after_s=5.0, started=100.0, mode="live")
    assert a.on_pass(["ETH/USDT"], 114.0, has_symbols=True, replay_done=False) == []  # positive control below
    out = _alerts(a.on_pass(["ETH/USDT"], 116.0, has_symbols=True, replay_done=False))
    assert [x.dedup_key for x in out] == ["market_data:no_data"] and "mode live" in out[0].detail
    assert a.on_pass(["ETH/USDT"], 200.0, has_symbols=True, replay_done=False) == []  # once


def test_no_data_is_not_alerted_without_symbols_or_after_a_replay_ended():
    for kw in ({"has_symbols": False, "replay_done": False}, {"has_symbols": True, "replay_done": True}):
        a = StalenessAlerts(stale_after_s=1.0, started=0.0, mode="replay")
        assert a.on_pass(["X/USDT"], 100.0, **kw) == []


def test_a_frozen_price_alerts_once_per_symbol_until_it_is_fresh_again():
    a = StalenessAlerts(stale_after_s=5.0, started=0.0, mode="live")
    frozen = StatusChange("BTC/USDT", "stale", 1.0, "price frozen for 61s (> 60s)", frozen=True)
    out = _alerts(a.on_change(frozen))
    assert out == [
        StaleAlert("SEV-2", "market data frozen: BTC/USDT", frozen.reason, "market_data:frozen:BTC/USDT")
    ]
    assert _alerts(a.on_change(frozen)) == []
    a.on_change(StatusChange("BTC/USDT", "fresh", 0.1, ""))
    assert _alerts(a.on_change(frozen))


def test_each_change_is_logged_with_its_fields():
    a = StalenessAlerts(stale_after_s=5.0, started=0.0, mode="live")
    assert a.on_change(StatusChange("BTC/USDT", "fresh", 0.1, "")) == [
        StaleNote("info", "symbol fresh", (("symbol", "BTC/USDT"),))
    ]
    note = a.on_change(StatusChange("BTC/USDT", "stale", 7.123, "no update"))[0]
    assert note == StaleNote(
        "warning", "symbol stale", (("symbol", "BTC/USDT"), ("age_s", 7.12), ("reason", "no update"))
    )


def test_a_symbol_that_left_the_universe_is_no_longer_known():
    a = StalenessAlerts(stale_after_s=5.0, started=0.0, mode="live")
    a.on_change(StatusChange("BTC/USDT", "fresh", 0.1, ""))
    a.forget("BTC/USDT")
    assert _alerts(a.on_pass(["BTC/USDT"], 10.0, has_symbols=True, replay_done=False)) == []


def test_health_is_degraded_while_a_known_symbol_is_stale_or_the_source_backs_off():
    a = StalenessAlerts(stale_after_s=5.0, started=0.0, mode="live")
    assert a.health(0, 2, 1.0, "ok", False) == ("ok", "")  # start grace
    assert a.health(0, 2, 6.0, "ok", False) == ("ok", "2/2 symbols stale")
    assert a.health(2, 0, 6.0, "banned", False) == ("degraded", "source banned")
    a.on_change(StatusChange("BTC/USDT", "fresh", 0.1, ""))
    assert a.health(1, 1, 1.0, "ok", True) == ("degraded", "1/2 symbols stale; replay finished")
