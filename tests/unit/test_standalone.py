"""The repository stands alone: no tracked file reads or names a path outside the clone."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# built from parts so that this file does not name them itself
FORBIDDEN = ("../" + "shared", "/work" + "/shared", "/work" + "/main")


def test_no_tracked_file_names_a_path_outside_the_repository():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    offenders = []
    for name in files.decode().split("\0"):
        if not name or name.startswith(".ci/"):
            continue
        try:
            text = (ROOT / name).read_text(errors="ignore")
        except (OSError, IsADirectoryError):
            continue
        for needle in FORBIDDEN:
            if needle in text:
                offenders.append(f"{name}: {needle}")
    assert not offenders, "files naming paths outside the repository:\n" + "\n".join(offenders)


def test_vendored_data_is_present():
    for name in (
        "binance_markets_ccxt.json",
        "ohlcv/BTCUSDT-1h.csv",
        "ohlcv/XRP_ETH-1m.json",
        "ohlcv/XRP_ETH-5m.json",
    ):
        assert (ROOT / "data" / name).is_file(), name
