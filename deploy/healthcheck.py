"""Container healthcheck for a BN-ML service (stdlib + pyyaml only; the image's HEALTHCHECK and compose run it).

    python deploy/healthcheck.py [service]

Healthy (exit 0) when the service's Prometheus endpoint answers with `bnml_<service>_up 1`, and for ops_api
also `GET /health` answers 200. The service comes from the argument, else BNML_SERVICE, else the container's
command (`python -m services.<name>` in /proc/1/cmdline). Ports come from the same places the service reads
them: BNML_<SERVICE>__METRICS_PORT / BNML_OPS_API__PORT, else the YAML config (BNML_CONFIG).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

SERVICES = ("market_data", "signal", "risk", "execution", "ops_api")


def service_name(argv: list[str]) -> str:
    if len(argv) > 1:
        return argv[1]
    if os.environ.get("BNML_SERVICE"):
        return os.environ["BNML_SERVICE"]
    try:
        cmd = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmd = []
    for part in cmd:
        text = part.decode(errors="replace")
        if text.startswith("services."):
            return text.split(".", 1)[1]
    raise SystemExit("healthcheck: which service? pass it as an argument or set BNML_SERVICE")


def setting(section: str, key: str) -> int:
    env = os.environ.get(f"BNML_{section.upper()}__{key.upper()}")
    if env:
        return int(env)
    import yaml

    path = Path(os.environ.get("BNML_CONFIG") or "configs/bot.yaml")
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    value = ((data or {}).get(section) or {}).get(key)
    if not value:
        raise SystemExit(f"healthcheck: {section}.{key} is not a fixed port (set BNML_{section.upper()}__"
                         f"{key.upper()})")
    return int(value)


def get(url: str, timeout: float = 4.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (a local http URL)
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")
        return resp.read().decode(errors="replace")


def check(service: str, host: str = "127.0.0.1") -> str:
    if service not in SERVICES:
        raise SystemExit(f"healthcheck: unknown service {service!r}; one of {', '.join(SERVICES)}")
    metrics = get(f"http://{host}:{setting(service, 'metrics_port')}/metrics")
    up = [line for line in metrics.splitlines() if line.startswith(f"bnml_{service}_up ")]
    if not up or float(up[0].split()[1]) != 1.0:
        raise RuntimeError(f"bnml_{service}_up is not 1 ({up[0] if up else 'missing'})")
    if service == "ops_api":
        get(f"http://{host}:{setting('ops_api', 'port')}/health")
    return f"{service} healthy"


def main(argv: list[str]) -> int:
    service = service_name(argv)
    try:
        print(check(service))
        return 0
    except Exception as exc:  # any failure is "unhealthy", with the reason in `docker inspect`
        print(f"{service} unhealthy: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
