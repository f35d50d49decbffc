"""Cross-section fallbacks are resolved once, by `BotSettings`: the sections the cores take, and the
configuration logged at start (`effective()`, what libs/common/service.py logs), hold the values in use."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from libs.common.markets import load_markets
from libs.common.settings import BotSettings, RiskSettings, load_settings
from services.ops_api.dod_store import thresholds_from
from services.risk.core import RiskEngine

T0 = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)


def test_unset_risk_freshness_is_logged_as_the_value_in_use(tmp_path):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("market_data: {stale_after_s: 7}\nmonitoring: {heartbeat_timeout_s: 12}\n")
    s = load_settings(cfg)
    assert s.risk.stale_after_s == 7 and s.risk.heartbeat_timeout_s == 12
    logged = s.effective()
    assert logged["risk"]["stale_after_s"] == 7  # not None: what risk's breakers use
    assert logged["risk"]["heartbeat_timeout_s"] == 12
    # control: a value risk sets is its own, logged as set
    cfg.write_text("market_data: {stale_after_s: 7}\nrisk: {stale_after_s: 3, heartbeat_timeout_s: 4}\n")
    own = load_settings(cfg).effective()
    assert own["risk"]["stale_after_s"] == 3 and own["risk"]["heartbeat_timeout_s"] == 4


def test_live_account_staleness_resolves_from_execution_paper_leaves_it_unset():
    live = BotSettings(mode="live", live={"confirm": True}, execution={"reconcile_interval_s": 10})
    assert live.risk.account_stale_after_s == 30
    assert live.effective()["risk"]["account_stale_after_s"] == 30
    assert BotSettings().risk.account_stale_after_s is None  # paper: unused


def test_dod_loss_budget_defaults_to_risks_and_is_logged():
    s = BotSettings(risk={"daily_loss_budget_usdt": "150"})
    assert s.monitoring.dod.daily_loss_budget_usdt == Decimal("150")
    assert s.effective()["monitoring"]["dod"]["daily_loss_budget_usdt"] == "150"
    assert thresholds_from(s).daily_loss_budget_usdt == Decimal("150")
    own = BotSettings(
        risk={"daily_loss_budget_usdt": "150"}, monitoring={"dod": {"daily_loss_budget_usdt": 90}}
    )
    assert thresholds_from(own).daily_loss_budget_usdt == Decimal("90")


def test_risk_core_refuses_an_unresolved_section():
    """Fail closed: no freshness limit is made up in the core (it was `or 10.0`)."""
    with pytest.raises(ValueError, match="risk.stale_after_s"):
        RiskEngine(RiskSettings(heartbeat_timeout_s=10), load_markets(), ["BTC/USDT"], T0)
    with pytest.raises(ValueError, match="risk.heartbeat_timeout_s"):
        RiskEngine(RiskSettings(stale_after_s=10), load_markets(), ["BTC/USDT"], T0)
    # control: the section as BotSettings resolves it is taken
    e = RiskEngine(BotSettings().risk, load_markets(), ["BTC/USDT"], T0)
    assert e.cfg.stale_after_s == BotSettings().market_data.stale_after_s


def test_sections_are_frozen():
    s = BotSettings()
    with pytest.raises(ValidationError):
        s.signal.probability_threshold = 0.0  # type: ignore[misc]
    assert s.signal.model_copy(update={"probability_threshold": 0.0}).probability_threshold == 0.0
