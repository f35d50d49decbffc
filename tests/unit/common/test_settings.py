"""Configuration: the YAML and env overrides load; a bad value refuses to start, naming the key."""

from pathlib import Path

import pytest

from libs.common.errors import ConfigurationError
from libs.common.settings import load_settings, mask_url, refuse_placeholder_secrets

ROOT = Path(__file__).resolve().parents[3]


def test_project_config_loads_in_paper_mode():
    s = load_settings(ROOT / "configs" / "bot.yaml")
    assert s.mode == "paper"
    assert s.paper_market_data_mode in ("synthetic", "live", "replay")
    assert s.storage.backup.enabled is True


def test_env_overrides_yaml(tmp_path, monkeypatch):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("risk: {max_notional_usdt: 100}\n")
    monkeypatch.setenv("BNML_RISK__MAX_NOTIONAL_USDT", "42")
    monkeypatch.setenv("NATS_URL", "nats://example:4222")
    s = load_settings(cfg)
    assert str(s.risk.max_notional_usdt) == "42"
    assert s.nats.url == "nats://example:4222"


@pytest.mark.parametrize(
    "text,key",
    [
        ("risk: {max_notional_usdt: -5}\n", "risk.max_notional_usdt"),
        ("risk: {max_notionl_usdt: 5}\n", "risk.max_notionl_usdt"),
        ("mode: yolo\n", "mode"),
        ("market_data: {synthetic: {ticks_per_s: abc}}\n", "market_data.synthetic.ticks_per_s"),
        ("symbols: [BTCUSDT]\n", "<root>"),
    ],
)
def test_bad_value_names_the_key(tmp_path, text, key):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigurationError) as err:
        load_settings(cfg)
    assert err.value.key == key


def test_live_mode_needs_confirmation_and_keys(tmp_path):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("mode: live\n")
    with pytest.raises(ConfigurationError, match="live.confirm"):
        load_settings(cfg)


def test_placeholder_token_refuses_to_start(tmp_path):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("ops_api: {operator_token: change-me-operator}\n")
    with pytest.raises(ConfigurationError, match="ops_api.operator_token"):
        refuse_placeholder_secrets(load_settings(cfg))


def test_effective_config_masks_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://bnml:hunter2@db:5432/bnml")
    monkeypatch.setenv("BNML_OPS_API__OPERATOR_TOKEN", "supersecret-operator-token")
    s = load_settings()
    text = str(s.effective())
    assert "hunter2" not in text and "supersecret" not in text
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
