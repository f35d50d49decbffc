"""In a clone with nothing beside it, replay mode starts with the project's own defaults: market_data
reads the vendored `data/ohlcv/BTCUSDT-1h.csv` (configs/bot.yaml, the settings default) and replays it
onto the bus. The clone is the repository's tracked files copied into an empty directory, so the test
sees the working tree as a fresh clone would, uncommitted changes included."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from libs.common import subjects
from libs.common.contracts import Tick
from tests.helpers import ROOT, ServiceProcess, wait_until

pytestmark = pytest.mark.integration


def fresh_clone(dest: Path) -> Path:
    """The tracked files of the repository, alone in `dest/bn-ml` (no sibling directory, no untracked file)."""
    clone = dest / "bn-ml"
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, names.split("\0")):
        src = ROOT / name
        if src.is_file():  # a file deleted in the working tree is not in the clone either
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / name)
    assert sorted(p.name for p in dest.iterdir()) == ["bn-ml"]
    return clone


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return fresh_clone(tmp_path / "checkout")


def _clone_env(clone: Path, nats_url: str) -> dict[str, str]:
    """Only NATS and the mode are given; everything else is the clone's own default."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BNML_") and k not in ("DATABASE_URL", "PYTHONPATH")
    }
    env.update(
        NATS_URL=nats_url,
        PYTHONPATH=str(clone),
        PYTHONUNBUFFERED="1",
        BNML_LOG_FORMAT="json",
        BNML_LOG_LEVEL="INFO",
        BNML_PAPER_MARKET_DATA_MODE="replay",
        BNML_MARKET_DATA__METRICS_PORT="0",
    )
    return env


def _start_in(clone: Path, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    where = subprocess.run(
        [sys.executable, "-c", "import services; print(services.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(clone), where  # the clone's code runs, not this checkout's
    md = ServiceProcess("market_data", env, log_dir)
    with open(md.log_path, "ab") as log:
        md.proc = subprocess.Popen(
            [sys.executable, "-m", "services.market_data"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return md


async def test_replay_mode_starts_in_a_fresh_clone_from_the_vendored_file(clone, tmp_path, bus, nats_url):
    ticks: list[Tick] = []

    async def on_tick(t: Tick, subject: str) -> None:
        ticks.append(t)

    await bus.subscribe(subjects.tick("BTC/USDT"), Tick, on_tick)
    await bus.nc.flush()
    # no config file or path given: the clone's configs/bot.yaml, its replay.path relative to the clone
    md = await asyncio.to_thread(_start_in, clone, _clone_env(clone, nats_url), tmp_path)
    try:
        await wait_until(lambda: len(ticks) >= 8 or not md.alive, timeout=60, message="replayed ticks")
        assert len(ticks) >= 8, f"market_data exited with {md.proc.poll()}:\n{md.logs()[-3000:]}"
        first = ticks[0]
        # the vendored file's first bar (1633046400000 = 2021-10-01T00:00Z): open 43820.01, close 43694.48
        assert first.source == "replay" and first.last == Decimal("43820.01"), first
        assert first.source_ts is not None and first.source_ts.isoformat().startswith("2021-10-01T00:00")
        assert ticks[3].last == Decimal("43694.48")
    finally:
        md.stop()
