"""deploy/docker-compose.yml, validated by Debian's docker-compose (`config`) and read for what operators rely on."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from tests.unit.deploy.tooling import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    PROM_DIR,
    ROOT,
    SERVICES,
    env_file_values,
    filled_env_file,
    nats_passwords,
    render_compose,
    require_binary,
)

COMPOSE_NAME = {s: s.replace("_", "-") for s in SERVICES}
METRICS_PORT = {"market_data": 9101, "signal": 9102, "risk": 9103, "execution": 9104, "ops_api": 9105}


DB_SERVICES = {"risk", "execution", "ops_api"}  # needs_db = True; market_data and signal have no database


def test_compose_config_is_valid_and_complete(tmp_path):
    passwords = nats_passwords()
    cfg = render_compose(filled_env_file(tmp_path / ".env", passwords))
    svcs = cfg["services"]
    assert set(svcs) == {
        "nats",
        "nats-exporter",
        "postgres",
        "migrate",
        "postgres-readonly",
        "prometheus",
        "alertmanager-config",
        "alertmanager",
        "grafana",
        *COMPOSE_NAME.values(),
    }
    for name, cname in COMPOSE_NAME.items():
        s = svcs[cname]
        assert s["command"] == ["python", "-m", f"services.{name}"]
        assert s["restart"] == "unless-stopped"
        deps = {k: v["condition"] for k, v in s["depends_on"].items()}
        want = {"nats": "service_healthy"}
        if name in DB_SERVICES:
            want.update(postgres="service_healthy", migrate="service_completed_successfully")
        assert deps == want, cname
        assert s["healthcheck"]["test"] == ["CMD", "python", "/app/deploy/healthcheck.py", name]
        env = s["environment"]
        assert env["NATS_URL"] == "nats://nats:4222"
        if name in DB_SERVICES:
            assert (
                env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
            )
        else:
            assert "DATABASE_URL" not in env, f"{cname} has no database and must not get its password"
        assert env["BNML_NATS__USER"] == name
        assert env["BNML_NATS__PASSWORD"] == passwords[name], f"{cname} must get its own NATS password"
        assert other_passwords_absent(env, passwords, name)
        assert int(env[f"BNML_{name.upper()}__METRICS_PORT"]) == METRICS_PORT[name]
        assert s["build"]["dockerfile"] == "Dockerfile"
    assert svcs["ops-api"]["environment"]["BNML_OPS_API__HOST"] == "0.0.0.0"
    assert all(
        len(svcs["ops-api"]["environment"][f"BNML_OPS_API__{r}_TOKEN"]) >= 12 for r in ("OPERATOR", "VIEWER")
    )


def test_each_secret_reaches_only_the_containers_that_use_it(tmp_path):
    env_file = filled_env_file(tmp_path / ".env")
    text = env_file.read_text()
    text = re.sub(r"^BNML_LIVE__API_KEY=.*$", "BNML_LIVE__API_KEY=kLIVEKEY0123456789", text, flags=re.M)
    text = re.sub(
        r"^BNML_LIVE__API_SECRET=.*$", "BNML_LIVE__API_SECRET=sLIVESECRET0123456789", text, flags=re.M
    )
    text = re.sub(
        r"^ALERTMANAGER_SMTP_PASSWORD=.*$", "ALERTMANAGER_SMTP_PASSWORD=smtpSECRET0123", text, flags=re.M
    )
    env_file.write_text(text)
    values = env_file_values(env_file)
    svcs = render_compose(env_file)["services"]
    allowed = {
        "POSTGRES_PASSWORD": {"postgres", "migrate", "postgres-readonly", "risk", "execution", "ops-api"},
        "POSTGRES_READONLY_PASSWORD": {"postgres-readonly", "grafana"},
        "BNML_OPS_API__OPERATOR_TOKEN": {"ops-api"},
        "BNML_OPS_API__VIEWER_TOKEN": {"ops-api"},
        "BNML_LIVE__API_KEY": {"execution"},
        "BNML_LIVE__API_SECRET": {"execution"},
        "GRAFANA_ADMIN_PASSWORD": {"grafana"},
        "ALERTMANAGER_SMTP_PASSWORD": {"alertmanager-config"},
    }
    for secret, who in allowed.items():
        value = values[secret]
        assert value, secret
        holders = {
            name
            for name, s in svcs.items()
            if any(value in str(v) for v in (s.get("environment") or {}).values())
        }
        assert holders == who, f"{secret} reaches {sorted(holders)}, should reach only {sorted(who)}"


def test_every_container_rotates_its_logs_has_limits_and_an_exact_image(tmp_path):
    svcs = render_compose(filled_env_file(tmp_path / ".env"))["services"]
    for name, s in svcs.items():
        log = s.get("logging") or {}
        assert (
            log.get("driver") == "json-file" and log["options"]["max-size"] and log["options"]["max-file"]
        ), name
        assert s.get("mem_limit") and float(s.get("cpus", 0)) > 0, f"{name}: memory and CPU limits"
        image = s["image"]
        if "build" in s:
            assert image.split(":")[-1] != "latest", f"{name}: the suite's image is tagged with a version"
            continue
        repo, _, tag = image.partition(":")
        # PostgreSQL numbers its releases major.minor (16.4); everything else here major.minor.patch
        exact = r"\d+\.\d+" if repo == "postgres" else r"v?\d+\.\d+\.\d+"
        assert re.fullmatch(exact + r"(-[a-z0-9.]+)?", tag), f"{name}: {image} is not an exact version"


def test_configuration_is_mounted_from_the_env_file_not_baked(tmp_path):
    env_file = filled_env_file(tmp_path / ".env")
    mine = tmp_path / "my-bot.yaml"
    mine.write_text((ROOT / "configs/bot.yaml").read_text())
    env_file.write_text(
        env_file.read_text().replace("BNML_CONFIG_FILE=../configs/bot.yaml", f"BNML_CONFIG_FILE={mine}")
    )
    svcs = render_compose(env_file)["services"]
    for name, s in svcs.items():
        if "build" not in s or name == "alertmanager-config":
            continue
        mounts = [
            _volume(v) + (str(v).endswith(":ro") or (isinstance(v, dict) and v.get("read_only")),)
            for v in s["volumes"]
        ]
        assert (str(mine), "/app/configs/bot.yaml", True) in mounts, (
            f"{name} must mount BNML_CONFIG_FILE read-only"
        )
    default = render_compose(filled_env_file(tmp_path / ".env"))["services"]["risk"]["volumes"]
    assert any(_volume(v) == (str(ROOT / "configs/bot.yaml"), "/app/configs/bot.yaml") for v in default)


def test_live_mode_and_its_confirmation_come_from_the_env_file(tmp_path, monkeypatch):
    """BNML_MODE=live and BNML_LIVE__CONFIRM=true in deploy/.env (no compose edit) reach every service; each one's
    compose environment validates as live, and only execution holds (and needs) the keys."""
    from libs.common.settings import load_settings

    env_file = filled_env_file(tmp_path / ".env")
    text = env_file.read_text().replace("BNML_MODE=paper", "BNML_MODE=live")
    text = text.replace("BNML_LIVE__CONFIRM=false", "BNML_LIVE__CONFIRM=true")
    text = re.sub(r"^BNML_LIVE__API_KEY=.*$", "BNML_LIVE__API_KEY=k123", text, flags=re.M)
    text = re.sub(r"^BNML_LIVE__API_SECRET=.*$", "BNML_LIVE__API_SECRET=s456", text, flags=re.M)
    env_file.write_text(text)
    svcs = render_compose(env_file)["services"]
    for name, cname in COMPOSE_NAME.items():
        env = {k: str(v) for k, v in svcs[cname]["environment"].items()}
        for key in [k for k in os.environ if k.startswith("BNML_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(ROOT / "configs/bot.yaml")
        assert settings.mode == "live" and settings.live.confirm, cname
        assert settings.live_keys_missing() == (name != "execution"), cname


def test_execution_refuses_live_mode_without_the_keys(monkeypatch, capsys):
    import asyncio

    from libs.common.settings import load_settings
    from services.execution.shell import ExecutionService

    monkeypatch.setenv("BNML_MODE", "live")
    monkeypatch.setenv("BNML_LIVE__CONFIRM", "true")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:9")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:9/x")
    monkeypatch.delenv("BNML_LIVE__API_KEY", raising=False)
    monkeypatch.delenv("BNML_LIVE__API_SECRET", raising=False)
    from libs.common.service import run_service

    assert asyncio.run(run_service(ExecutionService(), load_settings(ROOT / "configs/bot.yaml"))) == 2
    assert "BNML_LIVE__API_KEY" in capsys.readouterr().err


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
    ro = svcs["postgres-readonly"]
    assert ro["image"] == pg["image"] and ro["restart"] == "no"
    assert ro["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    am = svcs["alertmanager"]
    assert am["depends_on"] == {"alertmanager-config": {"condition": "service_completed_successfully"}}
    assert "/-/ready" in " ".join(am["healthcheck"]["test"])
    assert "http://nats:8222" in svcs["nats-exporter"]["command"]
    for name, s in svcs.items():
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for vol in s.get("volumes", []):
            source, _ = _volume(vol)
            if source.startswith("/"):
                assert Path(source).exists() and ROOT in Path(source).parents, f"{name}: bind mount {source}"
            else:
                assert source in yaml.safe_load(COMPOSE_FILE.read_text())["volumes"], (
                    f"{name}: volume {source}"
                )


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
    res = subprocess.run(
        [binary, "--env-file", str(env), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DEPLOY,
    )
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
