"""`bnml status --config x` finds the suite that configuration describes when no launcher file or env says."""

from __future__ import annotations

import yaml

from bnml.client import from_config


def _config(tmp_path, ops: dict) -> str:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({"ops_api": ops}))
    return str(path)


def test_config_gives_the_ops_api_address_and_real_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("BNML_OPS_API__VIEWER_TOKEN", "viewer-token-from-env-0123456789")
    info = from_config({}, _config(tmp_path, {"host": "0.0.0.0", "port": 18765}))
    assert info["ops_api_url"] == "http://127.0.0.1:18765"  # a wildcard bind is reached on loopback
    assert info["viewer_token"] == "viewer-token-from-env-0123456789"
    assert "operator_token" not in info  # the shipped placeholder is never sent as a token


def test_the_launcher_file_or_env_wins_and_no_config_changes_nothing(tmp_path):
    known = {"ops_api_url": "http://127.0.0.1:8000", "viewer_token": "t"}
    assert from_config(known, _config(tmp_path, {"port": 18765})) == known
    assert from_config({}, None) == {}
