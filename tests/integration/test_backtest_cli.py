"""`bnml train` then `bnml backtest` as a user runs them: a full-stack training report, a backtest directory
with its four files and a one-screen summary; bad input exits non-zero with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _bnml(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", "--config", str(cfg), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )


def test_train_then_backtest_from_the_command_line(tmp_path):
    cfg = tmp_path / "bot.yaml"
    base = yaml.safe_load((ROOT / "configs" / "bot.yaml").read_text())
    base["signal"]["models_dir"] = str(tmp_path / "models")
    base["storage"]["artifacts_dir"] = str(tmp_path / "artifacts")
    cfg.write_text(yaml.safe_dump(base))
    trained = _bnml(cfg, "train", "--data", "data/ohlcv/BTCUSDT-1h.csv", "--folds", "2")
    # 0: promoted; 3: the gate refused it (this model has no edge), the artefact is written all the same
    assert trained.returncode in (0, 3), trained.stderr[-2000:]
    version_dir = (
        Path(trained.stdout.strip().splitlines()[-1].split()[0])
        if trained.returncode == 0
        else next(p for p in (tmp_path / "models").iterdir() if (p / "report.json").exists())
    )
    report = json.loads((version_dir / "report.json").read_text())
    assert report["out_of_sample"]["evaluation"].startswith("full stack")

    run = _bnml(
        cfg,
        "backtest",
        "--data",
        "data/ohlcv/BTCUSDT-1h.csv",
        "--from",
        "2022-06-01",
        "--to",
        "2022-07-01",
        "--model",
        version_dir.name,
        "--null-runs",
        "2",
        "--id",
        "cli",
        "--no-progress",
        "--set",
        "risk.max_notional_usdt=50",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (
        "backtest cli" in run.stdout and "buy & hold" in run.stdout and "null        2 shifts" in run.stdout
    )
    out = tmp_path / "artifacts" / "backtests" / "cli"
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "equity.png", "trades.csv"}
    r = json.loads((out / "report.json").read_text())
    assert r["window"]["bars"] == 720 and r["config"]["risk"]["max_notional_usdt"] == "50"

    bad = _bnml(cfg, "backtest", "--data", "data/ohlcv/XRP_ETH-5m.json", "--no-progress")
    assert bad.returncode == 2 and "XRP/ETH is not in configs/markets" in bad.stderr
