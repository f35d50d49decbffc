"""Fixtures for the backtest tests: the settings, the markets, a model trained on the real BTCUSDT 1h bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common import ohlcv
from libs.common.markets import DEFAULT_MARKETS_PATH, Markets
from libs.common.settings import BotSettings
from services.signal.registry import load_model
from services.signal.train import run_training

DATA = Path(__file__).resolve().parents[3] / "data" / "ohlcv"
BTC_1H = DATA / "BTCUSDT-1h.csv"


def settings_for(models_dir: Path, **risk) -> BotSettings:
    base = BotSettings()
    sig = base.signal.model_copy(update={"models_dir": str(models_dir)})
    train = sig.train.model_copy(update={"data": str(BTC_1H), "folds": 2})
    sig = sig.model_copy(update={"train": train})
    return base.model_copy(
        update={"signal": sig, "symbols": ["BTC/USDT"], "risk": base.risk.model_copy(update=risk)}
    )


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
