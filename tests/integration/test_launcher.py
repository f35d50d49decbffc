"""The newcomer's path: `bnml up` starts everything embedded, trades on paper, obeys the kill switch,
and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, processes_left_on

# `bnml up` binds the default ports (API 8000, metrics 9101-9105, Postgres 5433): the `default_ports` fixture
# lets one such test run at a time across the xdist workers of `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("default_ports")]


def _bnml(cwd: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnml.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _status(cwd: Path, env: dict) -> dict | None:
    res = _bnml(cwd, "status", "--json", env=env)
    return json.loads(res.stdout) if res.returncode == 0 else None


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_bnml_up_trades_on_paper_obeys_kill_switch_and_stops_clean(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BNML_") and k not in ("NATS_URL", "DATABASE_URL")
    }
    env.update(
        BNML_CONFIG=str(ROOT / "configs" / "bot.yaml"),
        PYTHONUNBUFFERED="1",
        # what a newcomer runs: no edge setting, so the launcher applies its demo rule (the shipped 0 bps
        # edge gate would make the synthetic bootstrap model abstain); it trades noise under UNGATED
        BNML_SIGNAL__MODELS_DIR=str(tmp_path / "models"),
    )  # not the clone's registry: this rule is a demo
    out = open(tmp_path / "launcher.out", "w")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "bnml.cli", "up"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
    )
    children: list[psutil.Process] = []
    try:
        # Within a minute of start, the status shows paper fills.
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            assert launcher.poll() is None, (tmp_path / "launcher.out").read_text()
            status = _status(tmp_path, env)
            if status and status["counts"]["fills"] > 0:
                break
            time.sleep(1)  # a poll's interval
        assert status and status["counts"]["fills"] > 0, (tmp_path / "launcher.out").read_text()
        assert status["mode"] == "paper"
        assert status["model"]["version"].startswith("bootstrap-") and status["model"]["gate_passed"] is False
        assert "has not passed the promotion gate" in status["model"]["warning"]
        human = _bnml(tmp_path, "status", env=env)
        assert "WARNING model bootstrap-" in human.stdout and "gate NOT PASSED" in human.stdout, human.stdout
        assert set(status["services"]) == {"market_data", "signal", "risk", "execution", "ops_api"}
        assert all(s["status"] == "ok" for s in status["services"].values()), status["services"]
        assert (tmp_path / "artifacts" / "logs" / "execution.log").exists()
        human = _bnml(tmp_path, "status", env=env)  # the same facts for a person; piped here, so plain text
        assert human.returncode == 0, human.stderr
        assert human.stdout.startswith("mode paper  trading ") and "\x1b[" not in human.stdout
        assert {line.split()[0] for line in human.stdout.splitlines()[1:] if line.split()} >= set(
            status["services"]
        )
        children = _descendants(launcher.pid)

        engaged = _bnml(tmp_path, "kill-switch", "engage", "--reason", "launcher test", env=env)
        assert engaged.returncode == 0, engaged.stderr
        assert json.loads(engaged.stdout)["missing"] == []
        # acknowledged by execution: what was in flight is journaled (it waits for it), nothing after it is sent
        after = _status(tmp_path, env)["counts"]
        orders_after_engage = after["orders"]
        # signals keep flowing and risk refuses them (its heartbeat's total, in the status): then no new order
        deadline = time.monotonic() + 60
        while (status := _status(tmp_path, env))["counts"]["verdicts_refused"] <= after["verdicts_refused"]:
            assert time.monotonic() < deadline, f"risk refused nothing after the engage: {status['counts']}"
            time.sleep(0.5)  # a poll's interval
        assert status["kill_switch"]["engaged"] is True and status["trading_state"] == "HALTED"
        assert status["counts"]["orders"] == orders_after_engage
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(40)
        except subprocess.TimeoutExpired:
            launcher.kill()
            code = None
        out.close()
    assert code == 0, (tmp_path / "launcher.out").read_text()
    launcher_out = (tmp_path / "launcher.out").read_text()
    assert (
        "| ticks=" in launcher_out and "\x1b[" not in launcher_out
    )  # the status line, plain when not a terminal
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"

    # postgres daemonizes (not a descendant): anything still running on this test's data dir
    leftovers = processes_left_on(tmp_path)
    assert not leftovers, f"left behind: {leftovers}"
    assert _status(tmp_path, env) is None  # no running suite any more: status exits non-zero
