"""Fixtures for the signal unit tests: settings pointing at a temporary registry, a small trained model.
The builders are in tests/kit/signal.py."""

from __future__ import annotations

import pytest

from services.signal.registry import load_current
from services.signal.train import run_training
from tests.kit.signal import bar_rounds, make_settings

__all__ = ["bar_rounds", "make_settings", "trained"]  # the builders stay importable from here


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small synthetic model in its own registry: (settings, LoadedModel)."""
    root = tmp_path_factory.mktemp("models")
    settings = make_settings(root)
    quick = settings.signal.train.model_copy(update={"synthetic_bars": 3000, "folds": 2})
    run_training(settings, train=quick, progress=lambda m: None, drift_replay=False, bootstrap=True)
    return settings, load_current(root)
