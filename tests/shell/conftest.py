"""Fixtures for the shell tests: settings for an in-process shell (tests/kit/harness.py) on this test's servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from libs.common.settings import BotSettings
from tests.kit.harness import shell_settings


@pytest.fixture
def settings_for(tmp_path: Path, nats_url: str, database_url: str) -> Callable[..., BotSettings]:
    """`settings_for({"risk": {...}})`: the suite's config with these overrides, on this test's NATS and Postgres."""

    def make(overrides: dict[str, Any] | None = None) -> BotSettings:
        return shell_settings(tmp_path, nats_url, database_url, overrides)

    return make
