"""The Dockerfile, its pinned requirements, the container healthcheck, and the NATS server config."""

from __future__ import annotations

import re
import subprocess
import sys

from bnml.embedded import _venv_bin
from tests.unit.deploy.tooling import NATS_CONFIG, ROOT, nats_passwords, password_env

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_image_is_python_311_slim_non_root_with_a_healthcheck():
    assert re.search(r"^FROM python:3\.11-slim\b", DOCKERFILE, re.M)
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*deploy/healthcheck\.py", DOCKERFILE, re.M)
    assert "pip install --no-deps -r /tmp/requirements.lock" in DOCKERFILE


def test_every_copied_path_exists_and_passes_the_dockerignore():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("*").rstrip("/") for line in ignore if line.startswith("!")]
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+", DOCKERFILE, re.M):
        assert (ROOT / src).exists(), f"COPY {src}: missing"
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"COPY {src}: excluded by .dockerignore"


def test_requirements_lock_pins_every_runtime_dependency():
    res = subprocess.run([sys.executable, str(ROOT / "deploy/lock.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    lines = [x for x in (ROOT / "deploy/requirements.lock").read_text().splitlines() if x and not x.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", x) for x in lines), "exact pins only"
    names = {x.split("==")[0] for x in lines}
    assert not names & {"pytest", "hypothesis", "ruff", "testcontainers", "bn-ml"}, "no test tools or the project"


def _nats_test_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([_venv_bin("nats-server"), "-c", str(NATS_CONFIG), "-t"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=30)


def test_nats_config_is_valid_with_every_password_set():
    res = _nats_test_config(password_env(nats_passwords()))
    assert res.returncode == 0, res.stdout + res.stderr


def test_nats_refuses_to_start_when_a_password_is_missing():
    env = password_env(nats_passwords())
    del env["NATS_EXECUTION_PASSWORD"]
    res = _nats_test_config(env)
    assert res.returncode != 0 and "NATS_EXECUTION_PASSWORD" in res.stdout + res.stderr


def test_healthcheck_names_the_service_from_argument_env_or_container_command(monkeypatch):
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import healthcheck
    finally:
        sys.path.pop(0)
    assert healthcheck.service_name(["hc", "risk"]) == "risk"
    monkeypatch.setenv("BNML_SERVICE", "signal")
    assert healthcheck.service_name(["hc"]) == "signal"
    monkeypatch.setenv("BNML_EXECUTION__METRICS_PORT", "9")  # nothing listens on the discard port
    assert healthcheck.main(["hc", "execution"]) == 1


def test_every_locked_package_installs_from_a_portable_wheel():
    """python:3.11-slim has no compiler: every pinned package must be pure Python or a manylinux wheel (as the
    virtualenv the tests run in installed it)."""
    from importlib import metadata

    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import lock
    finally:
        sys.path.pop(0)
    local_builds = []
    for name in lock.read_lock():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (the lock names it; the check below is about what is)
        tags = [line.split(": ", 1)[1] for line in (dist.read_text("WHEEL") or "").splitlines()
                if line.startswith("Tag: ")]
        if tags and not any(t.endswith("-any") or "manylinux" in t for t in tags):
            local_builds.append(f"{name} ({', '.join(tags)})")
    assert not local_builds, f"built from source here, would need a compiler in the image: {local_builds}"
