"""deploy/nats/cluster.conf and deploy/docker-compose.cluster.yml: valid for nats-server and docker-compose,
the same durability as the embedded cluster, three nodes every BN-ML service reaches, streams at R3."""

from __future__ import annotations

import subprocess

import yaml

from bnml.embedded import CLUSTER_JETSTREAM, _venv_bin
from tests.unit.deploy.test_compose_file import COMPOSE_NAME
from tests.unit.deploy.tooling import (
    COMPOSE_FILE,
    DEPLOY,
    filled_env_file,
    nats_passwords,
    password_env,
    require_binary,
)

CLUSTER_CONFIG = DEPLOY / "nats" / "cluster.conf"
CLUSTER_COMPOSE = DEPLOY / "docker-compose.cluster.yml"
NODES = ("nats", "nats-2", "nats-3")


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_venv_bin("nats-server"), "-c", str(CLUSTER_CONFIG), "-t"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


def test_cluster_config_is_valid_and_keeps_the_auth_config():
    res = _check(password_env(nats_passwords()))
    assert res.returncode == 0, res.stderr + res.stdout
    env = password_env(nats_passwords())
    env.pop("NATS_RISK_PASSWORD")
    assert _check(env).returncode != 0, "a node without every password must refuse to start"


def test_cluster_config_fsyncs_every_write_as_the_embedded_cluster_does():
    text = CLUSTER_CONFIG.read_text()
    assert CLUSTER_JETSTREAM in text
    assert 'include "nats-server.conf"' in text
    for n in (1, 2, 3):
        assert f"nats-route://nats-{n}:6222" in text


def test_cluster_override_renders_three_nodes_and_r3_for_every_service(tmp_path):
    binary = require_binary("docker-compose", "docker-compose")
    env_file = filled_env_file(tmp_path / ".env")
    res = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "-f", str(CLUSTER_COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DEPLOY,
    )
    assert res.returncode == 0, f"docker-compose config failed:\n{res.stderr}"
    svcs = yaml.safe_load(res.stdout)["services"]
    names = []
    for node in NODES:
        s = svcs[node]
        assert s["command"][:2] == ["-c", "/etc/nats/cluster.conf"] and "-js" in s["command"], node
        names.append(s["command"][s["command"].index("--name") + 1])
        mounts = {v.split(":")[1] for v in s["volumes"]}
        assert {
            "/etc/nats/cluster.conf",
            "/etc/nats/nats-server.conf",
            "/etc/nats/auth.conf",
            "/data",
        } <= mounts
        assert set(s["environment"]) == {f"NATS_{u.upper()}_PASSWORD" for u in nats_passwords()}, node
        # healthy once JetStream's meta group has a leader (the services create R3 streams right away)
        assert s["healthcheck"]["test"][-1] == "http://127.0.0.1:8222/healthz", node
    assert names == ["nats-1", "nats-2", "nats-3"]
    assert svcs["nats"]["networks"]["default"]["aliases"] == ["nats-1"]
    data = [next(v.split(":")[0] for v in svcs[n]["volumes"] if v.split(":")[1] == "/data") for n in NODES]
    assert len(set(data)) == 3, f"each node its own store: {data}"
    for cname in COMPOSE_NAME.values():
        env = svcs[cname]["environment"]
        assert env["NATS_URL"] == "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222", cname
        assert env["BNML_NATS__REPLICAS"] == "3", cname
        deps = svcs[cname]["depends_on"]
        assert all(deps[n]["condition"] == "service_healthy" for n in NODES), cname
