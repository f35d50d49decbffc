"""How a command finds a running suite: `artifacts/run/suite.json` (local launcher) or the environment."""

from __future__ import annotations

import httpx

from libs.common.suite import SUITE_FILE, suite_info

__all__ = ["SUITE_FILE", "NoSuite", "api_get", "from_config", "suite_info"]


class NoSuite(Exception):
    """No running suite could be reached; the message is a one-line reason."""


def from_config(info: dict, config: str | None) -> dict:
    """Fill what the launcher's file and the environment did not give from the configuration: the ops API's
    address (`ops_api.host`/`port`) and its tokens, unless they are placeholders (`--config` on a command)."""
    if config is None or info.get("ops_api_url"):
        return info
    from libs.common.settings import PLACEHOLDER_PREFIX, load_settings

    ops = load_settings(config).ops_api
    host = "127.0.0.1" if ops.host in ("0.0.0.0", "") else ops.host
    out = {**info, "ops_api_url": f"http://{host}:{ops.port}"} if ops.port else dict(info)
    for role in ("viewer", "operator"):
        token = getattr(ops, f"{role}_token").get_secret_value()
        if token and not token.startswith(PLACEHOLDER_PREFIX) and f"{role}_token" not in out:
            out[f"{role}_token"] = token
    return out


def api_get(path: str, *, role: str = "viewer", timeout: float = 5.0, config: str | None = None) -> dict:
    info = from_config(suite_info(), config)
    url = info.get("ops_api_url")
    if not url:
        raise NoSuite(
            "no running suite: start it with `make run` (or set BNML_OPS_API_URL, or pass --config)"
        )
    token = info.get(f"{role}_token") or info.get("operator_token") or ""
    try:
        r = httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise NoSuite(f"ops API at {url} unreachable ({type(exc).__name__}); is the suite running?") from None
    if r.status_code >= 400:
        raise NoSuite(f"ops API at {url} answered {r.status_code}: {r.text[:200]}")
    return r.json()
