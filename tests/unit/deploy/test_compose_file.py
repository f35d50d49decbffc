"""deploy/docker-compose.yml, validated by Debian's docker-compose (`config`) and read for what operators rely on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.unit.deploy.tooling import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    PROM_DIR,
    SERVICES,
    env_file_values,
    filled_env_file,
    nats_passwords,
    render_compose,
    require_binary,
)

COMPOSE_NAME = {s: s.replace("_", "-") for s in SERVICES}
METRICS_PORT = {"market_data": 9101, "signal": 9102, "risk": 9103, "execution": 9104, "ops_api": 9105}


def test_compose_config_is_valid_and_complete(tmp_path):
    passwords = nats_passwords()
    cfg = render_compose(filled_env_file(tmp_path / ".env", passwords))
    svcs = cfg["services"]
    assert set(svcs) == {"nats", "nats-exporter", "postgres", "migrate", "prometheus", "grafana",
                         *COMPOSE_NAME.values()}
    for name, cname in COMPOSE_NAME.items():
        s = svcs[cname]
        assert s["command"] == ["python", "-m", f"services.{name}"]
        assert s["restart"] == "unless-stopped"
        deps = {k: v["condition"] for k, v in s["depends_on"].items()}
        assert deps == {"nats": "service_healthy", "postgres": "service_healthy",
                        "migrate": "service_completed_successfully"}, cname
        assert s["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/healthcheck.py", name]
        env = s["environment"]
        assert env["NATS_URL"] == "nats://nats:4222"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["BNML_NATS__USER"] == name
        assert env["BNML_NATS__PASSWORD"] == passwords[name], f"{cname} must get its own NATS password"
        assert other_passwords_absent(env, passwords, name)
        assert int(env[f"BNML_{name.upper()}__METRICS_PORT"]) == METRICS_PORT[name]
        assert s["build"]["dockerfile"] == "Dockerfile"
    assert svcs["ops-api"]["environment"]["BNML_OPS_API__HOST"] == "0.0.0.0"
    assert all(len(svcs["ops-api"]["environment"][f"BNML_OPS_API__{r}_TOKEN"]) >= 12 for r in ("OPERATOR", "VIEWER"))


def other_passwords_absent(env: dict, passwords: dict[str, str], me: str) -> bool:
    values = set(map(str, env.values()))
    return not any(pw in values for user, pw in passwords.items() if user != me)


def test_infrastructure_services_have_healthchecks_volumes_and_local_ports(tmp_path):
    svcs = render_compose(filled_env_file(tmp_path / ".env"))["services"]
    nats = svcs["nats"]
    assert re.fullmatch(r"nats:[\d.]+-alpine", nats["image"]), "the alpine variant has the shell wget needs"
    assert nats["command"][:2] == ["-c", "/etc/nats/nats-server.conf"] and "-js" in nats["command"]
    assert any(_volume(v) == ("nats-data", "/data") for v in nats["volumes"])
    assert "8222" in " ".join(nats["healthcheck"]["test"])
    assert set(nats["environment"]) == {f"NATS_{u.upper()}_PASSWORD" for u in nats_passwords()}
    pg = svcs["postgres"]
    assert pg["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(_volume(v) == ("postgres-data", "/var/lib/postgresql/data") for v in pg["volumes"])
    mig = svcs["migrate"]
    assert mig["command"][:4] == ["python", "-m", "bnml.cli", "migrate"] and mig["restart"] == "no"
    assert mig["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "http://nats:8222" in svcs["nats-exporter"]["command"]
    for name, s in svcs.items():
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for vol in s.get("volumes", []):
            source, _ = _volume(vol)
            if source.startswith("/"):
                assert Path(source).exists() and DEPLOY in Path(source).parents, f"{name}: bind mount {source}"
            else:
                assert source in yaml.safe_load(COMPOSE_FILE.read_text())["volumes"], f"{name}: volume {source}"


def _volume(spec) -> tuple[str, str]:
    """(source, target) from compose v1's rendered short syntax `src:dst[:mode]` or a long-syntax mapping."""
    if isinstance(spec, dict):
        return spec["source"], spec["target"]
    parts = spec.split(":")
    return parts[0], parts[1]


def test_a_missing_secret_stops_compose_with_its_name(tmp_path):
    binary = require_binary("docker-compose", "docker-compose")
    env = filled_env_file(tmp_path / ".env")
    env.write_text(re.sub(r"^NATS_RISK_PASSWORD=.*$", "NATS_RISK_PASSWORD=", env.read_text(), flags=re.M))
    res = subprocess.run([binary, "--env-file", str(env), "-f", str(COMPOSE_FILE), "config"], capture_output=True,
                         text=True, timeout=60, cwd=DEPLOY)
    assert res.returncode != 0 and "NATS_RISK_PASSWORD" in res.stderr


def test_env_example_lists_every_variable_and_holds_no_secret():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    example = env_file_values(ENV_EXAMPLE)
    assert used <= set(example), f"missing from .env.example: {sorted(used - set(example))}"
    for key, value in example.items():
        if any(w in key for w in ("PASSWORD", "TOKEN", "SECRET", "API_KEY")):
            assert value == "", f".env.example must not carry a value for {key}"


def test_prometheus_scrapes_every_service_on_its_compose_port(tmp_path):
    prom = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "bnml")
    targets = {g["labels"]["service"]: g["targets"][0] for g in job["static_configs"]}
    assert targets == {n: f"{COMPOSE_NAME[n]}:{METRICS_PORT[n]}" for n in SERVICES}
    svcs = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in SERVICES:
        assert str(METRICS_PORT[name]) in svcs[COMPOSE_NAME[name]]["expose"]
    exporter = next(j for j in prom["scrape_configs"] if j["job_name"] == "nats")
    assert exporter["static_configs"][0]["targets"] == ["nats-exporter:7777"]
    require_binary("docker-compose", "docker-compose")
