"""The Dockerfile, its pinned requirements, the container healthcheck, and the NATS server config."""

from __future__ import annotations

import re
import subprocess
import sys

from bnml.embedded import _venv_bin
from tests.unit.deploy.tooling import NATS_CONFIG, ROOT, nats_passwords, password_env

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_image_is_an_exact_python_311_slim_non_root_with_a_healthcheck():
    assert re.search(r"^FROM python:3\.11\.\d+-slim-trixie\b", DOCKERFILE, re.M), "an exact Python release"
    # ops_api's backups: trixie's postgresql-client (17) can dump the compose Postgres (16); bookworm's 15 cannot
    assert re.search(r"apt-get install -y --no-install-recommends postgresql-client\b", DOCKERFILE)
    compose = (ROOT / "deploy/docker-compose.yml").read_text()
    assert int(re.search(r"image: postgres:(\d+)\.", compose).group(1)) <= 17
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*deploy/healthcheck\.py", DOCKERFILE, re.M)
    assert "pip install --require-hashes --only-binary=:all: -r /tmp/requirements.lock" in DOCKERFILE
    assert "embedded" not in re.sub(r"^#.*$", "", DOCKERFILE, flags=re.M), (
        "the image does not install pgserver"
    )


def test_configuration_is_not_baked_into_the_image():
    copied = re.findall(r"^COPY\s+(\S+)\s+\S+", DOCKERFILE, re.M)
    assert "configs" not in copied and "configs/bot.yaml" not in copied
    assert "configs/markets" in copied, "the exchange filters are reference data, baked in"
    assert "!configs/bot.yaml" not in (ROOT / ".dockerignore").read_text()


def test_every_copied_path_exists_and_passes_the_dockerignore():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("*").rstrip("/") for line in ignore if line.startswith("!")]
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+", DOCKERFILE, re.M):
        assert (ROOT / src).exists(), f"COPY {src}: missing"
        assert any(src == a or src.startswith(a + "/") for a in allowed), (
            f"COPY {src}: excluded by .dockerignore"
        )


def _image_env(tmp_path, **extra) -> dict[str, str]:
    bindir = tmp_path / "bin"  # `python` on PATH is this interpreter, as /usr/local/bin/python in the image
    bindir.mkdir(exist_ok=True)
    if not (
        bindir / "python"
    ).exists():  # a wrapper, not a symlink: a venv is found from the interpreter's path
        (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bindir / "python").chmod(0o755)
    return {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **extra}


def test_the_image_has_the_bnml_command(tmp_path):
    """/usr/local/bin/bnml (deploy/bnml.sh) runs the CLI: `docker compose exec ops-api bnml status` works."""
    assert "COPY deploy/bnml.sh /usr/local/bin/bnml" in DOCKERFILE
    res = subprocess.run(
        ["sh", str(ROOT / "deploy/bnml.sh"), "--help"],
        capture_output=True,
        text=True,
        env=_image_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    for sub in ("status", "state", "dod", "backup", "incident", "kill-switch"):
        assert sub in res.stdout, sub


def test_the_entrypoint_refuses_to_start_without_the_mounted_configuration(tmp_path):
    assert re.search(r'^ENTRYPOINT \["/app/deploy/entrypoint.sh"\]', DOCKERFILE, re.M)
    script = str(ROOT / "deploy/entrypoint.sh")
    missing = subprocess.run(
        ["sh", script, "echo", "started"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_image_env(tmp_path, BNML_CONFIG=str(tmp_path / "configs/bot.yaml")),
    )
    assert missing.returncode == 2 and "not found" in missing.stderr and "started" not in missing.stdout
    # docker bind-mounts a missing host file as an empty directory: refused the same way
    (tmp_path / "configs/bot.yaml").mkdir(parents=True)
    assert (
        subprocess.run(
            ["sh", script, "true"],
            env=_image_env(tmp_path, BNML_CONFIG=str(tmp_path / "configs/bot.yaml")),
            capture_output=True,
            timeout=30,
        ).returncode
        == 2
    )
    present = subprocess.run(
        ["sh", script, "echo", "started"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_image_env(tmp_path, BNML_CONFIG=str(ROOT / "configs/bot.yaml")),
    )
    assert present.returncode == 0 and present.stdout.strip() == "started"


def _lock_module():
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import lock
    finally:
        sys.path.pop(0)
    return lock


def test_the_lock_is_hashed_generated_by_uv_and_matches_what_make_test_installed():
    res = subprocess.run(
        [sys.executable, str(ROOT / "deploy/lock.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout
    text = (ROOT / "deploy/requirements.lock").read_text()
    assert "autogenerated by uv" in text and "make lock" in text
    pins = _lock_module().read_lock()
    assert pins and all(p.hashes for p in pins.values())
    assert not set(pins) & {"pytest", "hypothesis", "ruff", "testcontainers", "bn-ml", "pgserver"}, (
        "no test tools, no embedded Postgres, not the project"
    )


def test_the_lock_check_names_every_difference():
    lock = _lock_module()
    pins = lock.read_lock()
    some = next(p for p in pins.values() if p.applies())

    def other_version(name):  # what a venv that drifted from the lock would report
        return "0.0.1" if name == some.name else lock.installed_version(name)

    problems = lock.differences(pins, lock.declared() | {"not-locked-pkg"}, installed=other_version)
    assert f"{some.name}: locked {some.version}, installed 0.0.1" in problems
    assert "not-locked-pkg: a runtime dependency in pyproject.toml, not in the lock" in problems
    assert lock.differences(pins, lock.declared()) == []  # the control: this venv agrees


def test_make_venv_installs_the_lock_first_and_pgserver_is_only_an_extra():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(r.startswith("pgserver") for r in project["dependencies"])
    assert any(r.startswith("pgserver") for r in project["optional-dependencies"]["embedded"])
    make = (ROOT / "Makefile").read_text()
    lock_at = make.index("--require-hashes -r $(LOCK)")
    assert lock_at < make.index('-e ".[test,embedded]"'), "the lock's versions first, then the project"
    assert re.search(r"^lock: .*\n(\t.*\n)*\t.*uv pip compile .*--universal.*--generate-hashes", make, re.M)


def _nats_test_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_venv_bin("nats-server"), "-c", str(NATS_CONFIG), "-t"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=30,
    )


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

    lock = _lock_module()
    local_builds = []
    for name in lock.read_lock():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (the lock names it; the check below is about what is)
        tags = [
            line.split(": ", 1)[1]
            for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag: ")
        ]
        if tags and not any(t.endswith("-any") or "manylinux" in t for t in tags):
            local_builds.append(f"{name} ({', '.join(tags)})")
    assert not local_builds, f"built from source here, would need a compiler in the image: {local_builds}"
