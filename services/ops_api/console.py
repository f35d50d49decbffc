"""The ops console: one static page (HTML, CSS, JS; no build step) served at `/`.

The first paint is rendered here from what needs no token (mode, kill switch, services' heartbeats, the
commands that stop trading without this page), so it reads without JavaScript; with a token typed in, the
script fills the figures from the JSON API and follows `/events`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("console")
# The page loads only its own files and talks only to this server.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none';"
    " base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def state_class(state: str) -> str:
    return {"ACTIVE": "ok", "HALTED": "bad"}.get(state, "warn")


def render(template: str, health: dict, mode: str, base_url: str) -> str:
    """The page with its no-token facts filled in (every value escaped)."""
    ks = health.get("kill_switch", {})
    engaged = bool(ks.get("engaged"))
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(str(s.get('status')))}</td>"
        f'<td class="num">{escape(str(s.get("heartbeat_age_s") if s.get("heartbeat_age_s") is not None else "—"))}</td></tr>'
        for name, s in health.get("services", {}).items()
    )
    values = {
        "mode": mode,
        "trading_state": "HALTED" if engaged else "state: needs a token",
        "state_class": "bad" if engaged else "",
        "kill_switch": "KILL SWITCH ENGAGED" if engaged else "kill switch off",
        "ks_class": "bad" if engaged else "ok",
        "ks_reason": f"since {ks.get('since')} ({ks.get('reason')})" if engaged else "",
        "base_url": base_url,
    }
    page = template.replace("{{service_rows}}", rows)
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", escape(str(value)))
    return page


def console_router(health: Callable[[], Awaitable[dict]], mode: str) -> APIRouter:
    r = APIRouter()
    template = (STATIC / "index.html").read_text(encoding="utf-8")

    @r.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def page(request: Request) -> HTMLResponse:
        base = str(request.base_url).rstrip("/")
        return HTMLResponse(render(template, await health(), mode, base), headers=HEADERS)

    return r


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
