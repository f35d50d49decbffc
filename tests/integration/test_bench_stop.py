"""`make bench` stopped with SIGTERM or Ctrl-C (SIGINT) leaves no NATS, no Postgres and no child process
running, and leaves bench/results/latest.json as it was."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, wait_until

pytestmark = pytest.mark.integration


def _servers(tmp: Path) -> dict[str, list[psutil.Process]]:
    """nats-server and postgres (postmaster) processes whose command line names a directory under `tmp`."""
    found: dict[str, list[psutil.Process]] = {"nats": [], "postgres": []}
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if not any(str(tmp) in part for part in cmd):
            continue
        if "nats-server" in (p.info["name"] or "") or any(part.endswith("nats-server") for part in cmd[:1]):
            found["nats"].append(p)
        elif (p.info["name"] or "").startswith("postgres"):
            found["postgres"].append(p)
    return found


def _everything_under(tmp: Path) -> list[str]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(str(tmp) in part for part in cmd):
            out.append(" ".join(cmd))
    return out


def _bench_command(area: str, via_make: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "bench", "--quick", "--only", area]
    if via_make is None:
        return cmd
    # as `make bench` runs it: one recipe line, which make starts itself (no shell in between)
    (via_make / "Makefile").write_text(".PHONY: bench\nbench:\n\t" + " ".join(cmd) + "\n")
    return ["make", "--no-print-directory", "-f", str(via_make / "Makefile"), "-C", str(ROOT), "bench"]


# pipeline: the shared embedded stack (bench/stack.py); risk: a benchmark that starts its Postgres in a
# thread and cannot stop it itself when interrupted early (the run's own sweep has to).
# `make bench` killed with SIGTERM: make passes SIGTERM on to the recipe it started (no shell in between).
@pytest.mark.parametrize(
    ("signum", "area", "via_make"),
    [(signal.SIGTERM, "pipeline", False), (signal.SIGINT, "risk", False), (signal.SIGTERM, "pipeline", True)],
)
def test_a_stopped_bench_leaves_no_server_running(signum, area, via_make):
    # a short root of the test's own: postgres's socket path (under its data dir) must stay < 108 bytes
    tmp_path = Path(tempfile.mkdtemp(prefix="bnml-bs-"))
    try:
        _stop_and_check(tmp_path, signum, area, via_make)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _stop_and_check(tmp_path: Path, signum: int, area: str, via_make: bool) -> None:
    results = ROOT / "bench" / "results" / "latest.json"
    before = results.read_bytes() if results.exists() else None
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "bench.out", "wb")
    bench = subprocess.Popen(
        _bench_command(area, tmp_path if via_make else None),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # positive control: while it runs, both servers are there and this test sees them
        def running() -> bool:
            assert bench.poll() is None, (tmp_path / "bench.out").read_text(errors="replace")
            return all(_servers(tmp_path).values())

        asyncio.run(
            wait_until(
                running, timeout=90, interval=0.1, message=f"bench {area} has NATS and Postgres running"
            )
        )
        children = psutil.Process(bench.pid).children(recursive=True)
        bench.send_signal(signum)
        asyncio.run(
            wait_until(lambda: bench.poll() is not None, timeout=60, message="bench exits after the signal")
        )
        code = bench.returncode
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)
        log.close()
    _, alive = psutil.wait_procs(children, timeout=30)  # under make, the bench itself is one of them
    out = (tmp_path / "bench.out").read_text(errors="replace")
    assert not alive, (
        f"left behind: {[' '.join(filter(None, p.cmdline())) for p in alive if p.is_running()]}\n{out}"
    )
    assert _everything_under(tmp_path) == [], "left behind"  # a daemonized postgres is no child of ours
    # make itself dies of the signal; the bench under it, like a bench run directly, exits 128 + signal
    assert code == (-signum if via_make else 128 + signum), out
    assert f"stopped by {signal.Signals(signum).name}" in out
    assert "Traceback" not in out, out
    assert (results.read_bytes() if results.exists() else None) == before
