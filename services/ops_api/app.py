"""The FastAPI app: health, status, kill switch. Reads come from Postgres and the bus, never from guesses."""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from libs.common import subjects
from libs.common.contracts import SERVICES, KillSwitchAcknowledged, KillSwitchCommand, utcnow
from libs.common.kill_switch import KillSwitchLatch
from libs.common.service import Runtime
from libs.common.settings import mask_url

OPEN_STATUSES = ["SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "UNKNOWN"]
ACKERS = ("risk", "execution")


@dataclass
class OpsState:
    rt: Runtime
    latch: KillSwitchLatch
    last_seen: dict[str, tuple[float, str]] = field(default_factory=dict)  # service -> (monotonic, status)
    acks: dict[str, dict[str, KillSwitchAcknowledged]] = field(default_factory=dict)  # command id -> service -> ack
    ack_events: dict[str, asyncio.Event] = field(default_factory=dict)
    public_url: str = ""

    def on_ack(self, ack: KillSwitchAcknowledged) -> None:
        self.acks.setdefault(ack.command_id, {})[ack.service] = ack
        ev = self.ack_events.get(ack.command_id)
        if ev is not None and all(s in self.acks[ack.command_id] for s in ACKERS):
            ev.set()


class KillSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["engage", "release"]
    reason: str = Field(min_length=1, max_length=500)
    flatten: bool = False
    actor: str = Field(default="ops_api", min_length=1, max_length=100)


def _token_ok(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def create_app(state: OpsState) -> FastAPI:
    app = FastAPI(title="BN-ML ops API", version="1")
    settings = state.rt.settings

    def bearer(request: Request) -> str:
        header = request.headers.get("authorization", "")
        return header[7:] if header.lower().startswith("bearer ") else ""

    def viewer(token: str = Depends(bearer)) -> str:
        if _token_ok(token, settings.ops_api.viewer_token.get_secret_value()) or _token_ok(
                token, settings.ops_api.operator_token.get_secret_value()):
            return "viewer"
        raise HTTPException(status_code=401, detail="missing or wrong bearer token")

    def operator(token: str = Depends(bearer)) -> str:
        if _token_ok(token, settings.ops_api.operator_token.get_secret_value()):
            return "operator"
        raise HTTPException(status_code=401 if not token else 403, detail="operator bearer token required")

    def services_view() -> dict[str, dict]:
        now = time.monotonic()
        out = {}
        for name in SERVICES:
            if name == "ops_api":
                out[name] = {"heartbeat_age_s": 0.0, "status": "ok"}
                continue
            seen = state.last_seen.get(name)
            if seen is None:
                out[name] = {"heartbeat_age_s": None, "status": "down"}
                continue
            age = round(now - seen[0], 3)
            status = seen[1] if age <= settings.monitoring.heartbeat_timeout_s else "down"
            out[name] = {"heartbeat_age_s": age, "status": status}
        return out

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "services": services_view()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(state.rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def kill_switch_view() -> dict:
        return state.latch.as_dict()

    @app.get("/kill-switch")
    async def get_kill_switch(_: str = Depends(viewer)) -> dict:
        return await kill_switch_view()

    @app.post("/kill-switch")
    async def post_kill_switch(body: KillSwitchRequest, _: str = Depends(operator)) -> JSONResponse:
        cmd = KillSwitchCommand(ts=utcnow(), action=body.action, reason=body.reason, actor=body.actor,
                                flatten=body.flatten)
        ev = state.ack_events[cmd.id] = asyncio.Event()
        started = time.perf_counter()
        await state.rt.bus.publish(subjects.kill_switch(), cmd)
        try:
            await asyncio.wait_for(ev.wait(), settings.ops_api.kill_switch_ack_timeout_s)
        except TimeoutError:
            pass
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        acks = state.acks.pop(cmd.id, {})
        state.ack_events.pop(cmd.id, None)
        missing = [s for s in ACKERS if s not in acks]
        body_out = {
            "command_id": cmd.id, "action": cmd.action, "acknowledged_by": sorted(acks), "missing": missing,
            "elapsed_ms": elapsed_ms,
            "detail": "acknowledged" if not missing else
            f"no acknowledgement from {', '.join(missing)} in time; the command stands on the bus",
            "acks": {s: a.model_dump(mode="json") for s, a in acks.items()},
        }
        return JSONResponse(body_out, status_code=200 if not missing else 202)

    @app.get("/status")
    async def status(_: str = Depends(viewer)) -> dict:
        async with state.rt.pool.connection() as conn:
            counters = {(r["service"], r["name"]): int(r["value"]) for r in await (await conn.execute(
                "SELECT service, name, value FROM service_counters")).fetchall()}
            row = await (await conn.execute(
                "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM fills) AS fills,"
                " (SELECT count(*) FROM orders WHERE status = ANY(%s)) AS open_orders,"
                " (SELECT value FROM kv_state WHERE key = 'trading_state') AS trading_state", (OPEN_STATUSES,)
            )).fetchone()
        ks = await kill_switch_view()
        stored_state = row["trading_state"]
        trading_state = "HALTED" if ks["engaged"] else (
            stored_state.get("state", "ACTIVE") if isinstance(stored_state, dict) else "ACTIVE")
        return {
            "mode": settings.mode,
            "trading_state": trading_state,
            "kill_switch": ks,
            "counts": {
                "ticks": counters.get(("market_data", "ticks"), 0),
                "signals": counters.get(("signal", "signals"), 0),
                "verdicts_approved": counters.get(("risk", "verdicts_approved"), 0),
                "verdicts_refused": counters.get(("risk", "verdicts_refused"), 0),
                "orders": int(row["orders"]),
                "fills": int(row["fills"]),
                "open_orders": int(row["open_orders"]),
                "dlq": sum(v for (svc, name), v in counters.items() if name == "dlq"),
            },
            "services": services_view(),
            "urls": {
                "nats": settings.nats.url,
                "database": mask_url(settings.database.url.get_secret_value()),
                "ops_api": state.public_url,
            },
        }

    return app
