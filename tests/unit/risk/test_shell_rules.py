"""The small pure pieces risk's shell wires: database freshness, health, the fill checkpoint, the effective
configuration and the journal's typed rows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from libs.common.errors import ConfigurationError
from libs.common.settings import BotSettings
from services.risk.checkpoint import Checkpoint
from services.risk.config import effective_risk_settings
from services.risk.health import DbHealth, service_health
from services.risk.journal_view import account_from_rows, order_from_row, still_moving
from tests.unit.risk.conftest import T0, fill, make_engine

D = Decimal


def test_database_is_fresh_only_after_a_success_and_within_its_limit():
    db = DbHealth(stale_after_s=5)
    assert not db.fresh(0.0)  # nothing written yet: fail closed (even on a clock starting at 0)
    db.succeeded(100.0)
    assert db.fresh(104.9) and not db.fresh(105.0)
    db.failed()
    assert not db.fresh(100.0)


def test_health():
    e = make_engine()
    assert service_health(False, False, "standby", False, "", None) == ("ok", "standby")
    assert service_health(False, True, "fenced: gone", False, "", e) == ("halted", "fenced: gone")
    assert service_health(True, False, "", True, "engaged by op", e) == ("halted", "engaged by op")
    assert service_health(True, False, "", False, "", None) == ("degraded", "starting")
    e.db_ok = False
    assert service_health(True, False, "", False, "", e) == ("degraded", "database unavailable")
    e.db_ok = True
    assert service_health(True, False, "", False, "", e) == ("ok", "")
    e.sm.state, e.sm.reason = "REDUCING", "daily_loss"
    assert service_health(True, False, "", False, "", e) == ("ok", "trading REDUCING: daily_loss")
    e.sm.state, e.sm.reason = "HALTED", "max_drawdown"
    assert service_health(True, False, "", False, "", e) == ("halted", "max_drawdown")


def test_a_checkpoint_puts_back_everything_a_fill_moved():
    e = make_engine()
    e.on_fill(fill("BTC/USDT", "BUY", "0.01", "60000"), T0)
    before = e.snapshot(T0).model_dump(exclude={"id"})
    saved = Checkpoint.take(e)
    e.on_fill(fill("BTC/USDT", "SELL", "0.01", "40000"), T0)  # a loss: book, streak, maybe breakers
    assert e.snapshot(T0).model_dump(exclude={"id"}) != before
    saved.restore(e)
    assert e.snapshot(T0).model_dump(exclude={"id"}) == before


def test_effective_settings_fall_back_on_market_data_and_monitoring():
    s = BotSettings(risk={"stale_after_s": None, "heartbeat_timeout_s": None})
    cfg = effective_risk_settings(s)
    assert cfg.stale_after_s == s.market_data.stale_after_s
    assert cfg.heartbeat_timeout_s == s.monitoring.heartbeat_timeout_s
    assert effective_risk_settings(BotSettings(risk={"stale_after_s": 7})).stale_after_s == 7


def live(**risk: object) -> BotSettings:
    """Live settings, confirmed, without keys (only risk's section matters), validated as loaded: its
    cross-section fallbacks resolve for live."""
    return BotSettings(mode="live", live={"confirm": True}, risk=risk)


def test_live_refuses_an_order_loop_trip_at_binances_limit():
    with pytest.raises(ConfigurationError):
        effective_risk_settings(live(order_loop_trip_per_10s=50))
    assert effective_risk_settings(live(order_loop_trip_per_10s=49)).order_loop_trip_per_10s == 49
    paper = BotSettings(risk={"order_loop_trip_per_10s": 50})
    assert effective_risk_settings(paper).order_loop_trip_per_10s == 50  # the paper benchmarks' wide value


def test_live_account_goes_stale_after_three_reconcile_intervals_unless_set():
    s = live()
    assert effective_risk_settings(s).account_stale_after_s == 3 * s.execution.reconcile_interval_s
    assert effective_risk_settings(live(account_stale_after_s=12)).account_stale_after_s == 12
    assert effective_risk_settings(BotSettings()).account_stale_after_s is None  # paper: unused


def test_journal_rows():
    row = {
        "verdict_id": "v",
        "client_order_id": "c",
        "symbol": "BTC/USDT",
        "side": "BUY",
        "quantity": "0.01",
        "price_limit": None,
        "status": "FILLED",
        "filled_quantity": "0.01",
        "applied": "0.004",
    }
    o = order_from_row(row)
    assert o.price_limit is None and o.applied == D("0.004") and not o.open
    done = order_from_row({**row, "applied": "0.01"})
    assert still_moving([o, done]) == [o]
    assert account_from_rows([]) is None
    acc = account_from_rows(
        [
            {"asset": "USDT", "free": "90", "locked": "10", "age": 3.0},
            {"asset": "BTC", "free": "1", "locked": "0", "age": 7.5},
        ]
    )
    assert acc is not None and acc.balances == {"USDT": D("100"), "BTC": D("1")} and acc.age_s == 7.5


def test_the_rebuild_reads_the_open_statuses_of_the_contract_as_the_partial_index_names_them():
    from libs.common.contracts import OPEN_ORDER_STATUSES
    from services.risk.store import REBUILD_SQL

    assert "o.status IN ('SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED', 'UNKNOWN')" in REBUILD_SQL
    assert all(f"'{s}'" in REBUILD_SQL for s in OPEN_ORDER_STATUSES)
