"""Fixtures for the signal unit tests: settings pointing at a temporary registry, a small trained model."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.settings import BotSettings
from services.signal.registry import load_current
from services.signal.train import run_training


def make_settings(models_dir: Path, **signal) -> BotSettings:
    base = BotSettings()
    sig = base.signal.model_copy(update={"models_dir": str(models_dir), **signal})
    return base.model_copy(update={"signal": sig})


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small synthetic model in its own registry: (settings, LoadedModel)."""
    root = tmp_path_factory.mktemp("models")
    settings = make_settings(root)
    quick = settings.signal.train.model_copy(update={"synthetic_bars": 3000, "folds": 2})
    run_training(settings, train=quick, progress=lambda m: None, drift_replay=False, bootstrap=True)
    return settings, load_current(root)
