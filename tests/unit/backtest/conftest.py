"""Fixtures for the backtest tests: the settings, the markets, a model trained on the real BTCUSDT 1h bars.
The builders are in tests/kit/backtest.py."""

from __future__ import annotations

import pytest

from libs.common import ohlcv
from libs.common.markets import DEFAULT_MARKETS_PATH, Markets
from services.signal.registry import load_model
from services.signal.train import run_training
from tests.kit.backtest import BTC_1H, DATA, settings_for

__all__ = [
    "BTC_1H",
    "DATA",
    "btc_1h",
    "btc_model",
    "markets",
    "settings_for",
]  # builders importable from here


@pytest.fixture(scope="session")
def markets() -> Markets:
    return Markets.load(DEFAULT_MARKETS_PATH)


@pytest.fixture(scope="session")
def btc_model(tmp_path_factory):
    """(settings, model): a logistic model on the real BTCUSDT 1h bars, in its own registry."""
    root = tmp_path_factory.mktemp("models")
    settings = settings_for(root)
    # the gate decides whether it becomes `current`; the backtest takes the artefact either way
    path = run_training(settings, progress=lambda m: None, drift_replay=False)
    return settings, load_model(root, path.name)


@pytest.fixture(scope="session")
def btc_1h():
    return ohlcv.load(BTC_1H, symbol="BTC/USDT")
