"""The FastAPI app: the operators' HTTP face. Reads come from Postgres and the bus, never from guesses.

Auth: bearer tokens, viewer (reads) and operator (kill switch, backups), compared in constant time;
a client with repeated failures gets 429; every control action and every refused attempt is an
append-only `api_audit` row. Invalid input gets a 4xx whose message names the field.
`/status` keeps exactly the shape of docs/interfaces.md (`bnml status --json`, the launcher's live view).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.common import subjects
from libs.common.contracts import (
    OPEN_ORDER_STATUSES,
    SERVICES,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    OrderStatus,
    ShardInfo,
    Side,
)
from libs.common.errors import InvalidInputError
from libs.common.kill_switch import KillSwitchLatch, sign
from libs.common.service import Runtime
from libs.common.settings import mask_url
from libs.common.shard import InstanceShard, ownership
from services.ops_api.auth import FailureThrottle, allows, role_for
from services.ops_api.controls import ControlDesk
from services.ops_api.events import EventHub

OPEN_STATUSES = list(OPEN_ORDER_STATUSES)  # a list: psycopg sends it as an array (`= ANY(%s)`)
ACKERS = ("risk", "execution")
SHARDED_SERVICES = ("market_data", "signal")
CONTROL_PATHS = ("/kill-switch", "/backup", "/control")


def served_model_view(models: list[dict]) -> dict | None:
    """`/status`'s `model`: what the running signal instances say they serve (their fresh heartbeats), None when
    none has said; instances that disagree are a warning."""
    if not models:
        return None
    versions = sorted({str(m.get("version")) for m in models})
    first = models[0]
    out = {
        "version": first.get("version"),
        "gate_passed": all(m.get("gate_passed") is True for m in models),
        "warning": first.get("warning") or "",
        "source": "signal",
        "instances": len(models),
    }
    if len(versions) > 1:
        out["warning"] = f"signal instances serve different models ({', '.join(versions)})" + (
            f"; {out['warning']}" if out["warning"] else ""
        )
    return out


@dataclass
class OpsState:
    rt: Runtime
    latch: KillSwitchLatch
    last_seen: dict[str, tuple[float, str]] = field(default_factory=dict)  # service -> (monotonic, status)
    # signal instance -> (monotonic, the model its heartbeat says it serves)
    served_models: dict[str, tuple[float, dict]] = field(default_factory=dict)
    # sharded services (signal, market_data): service -> instance -> (monotonic, its last heartbeat's shard, status)
    shards: dict[str, dict[str, tuple[float, ShardInfo | None, str]]] = field(default_factory=dict)
    acks: dict[str, dict[str, tuple[KillSwitchAcknowledged, float]]] = field(default_factory=dict)
    ack_events: dict[str, asyncio.Event] = field(default_factory=dict)
    latched: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # command id -> service -> when latched
    read: set[str] = field(default_factory=set)  # in-flight command ids this process's own latch has read
    public_url: str = ""
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    ks_results: dict[str, dict] = field(default_factory=dict)  # idempotency: command id -> answer
    ks_inflight: dict[str, asyncio.Future] = field(default_factory=dict)
    backup_runner: Callable[[str], Awaitable[dict]] | None = None  # set by the shell
    backup_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hub: EventHub = field(default_factory=EventHub)  # live updates (GET /events)
    controls: ControlDesk = field(default_factory=ControlDesk)  # pause / resume / exit (POST /control)

    def on_latched(self, ack: KillSwitchAcknowledged) -> None:
        """Execution latched an engage (before its sweep): kept to report how fast sends stopped. Execution
        sends "latched" before its ack, but the two come in on two subscriptions, whose callbacks may run in
        either order here: a latch handled after its ack happened no later than the ack arrived."""
        if ack.command_id in self.ack_events:
            now = time.perf_counter()
            acked = self.acks.get(ack.command_id, {}).get(ack.service)
            self.latched.setdefault(ack.command_id, {})[ack.service] = min(now, acked[1]) if acked else now

    def on_ack(self, ack: KillSwitchAcknowledged) -> None:
        if ack.command_id not in self.ack_events:
            return
        self.acks.setdefault(ack.command_id, {})[ack.service] = (ack, time.perf_counter())
        self._answer_when_complete(ack.command_id)

    def on_read(self, command_id: str) -> None:
        """This process's own subscription read the command: from now on GET /kill-switch shows it. The
        answer to the POST waits for this too, so that a GET after the answer never shows the state before."""
        if command_id in self.ack_events:
            self.read.add(command_id)
            self._answer_when_complete(command_id)

    def _answer_when_complete(self, command_id: str) -> None:
        ev = self.ack_events.get(command_id)
        acks = self.acks.get(command_id, {})
        if ev is not None and command_id in self.read and all(s in acks for s in ACKERS):
            ev.set()


class KillSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["engage", "release"]
    reason: str = Field(min_length=1, max_length=500)
    flatten: bool = False
    actor: str = Field(default="ops_api", min_length=1, max_length=100, pattern=r"^[\w.@:\- ]+$")

    @model_validator(mode="after")
    def _flatten_only_on_engage(self) -> KillSwitchRequest:
        if self.flatten and self.action != "engage":
            raise ValueError("flatten: only with action engage")
        return self


def jsonable(value):
    """Money stays exact: Decimal -> str; datetimes -> ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _field_of(err: dict) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    return ".".join(loc) or "body"


def create_app(state: OpsState) -> FastAPI:
    app = FastAPI(
        title="BN-ML ops API",
        version="1",
        description="Kill switch, state, journal, incidents, DoD reports and backups of BN-ML. "
        "What tools may rely on: docs/interfaces.md; the design: docs/design.md.",
    )
    settings = state.rt.settings
    cfg = settings.ops_api
    state.throttle = FailureThrottle(cfg.auth_max_failures, cfg.auth_window_s, cfg.auth_block_s)
    log = state.rt.log
    refused = state.rt.metrics.counter("auth_refused_total", "Refused API attempts", ["reason"])

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def audit(
        request: Request, role: str, action: str, outcome: str, status_code: int, detail: dict | None = None
    ) -> None:
        try:
            async with state.rt.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO api_audit (role, client, method, path, action, outcome, status_code, detail)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        role,
                        client_of(request),
                        request.method,
                        request.url.path,
                        action,
                        outcome,
                        status_code,
                        json.dumps(jsonable(detail or {})),
                    ),
                )
        except Exception as exc:  # the refusal itself must still happen
            log.error("audit write failed", error=str(exc), path=request.url.path)

    def requires(needed: str):
        async def dep(request: Request) -> str:
            client = client_of(request)
            now = state.rt.clock.monotonic()
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            role = role_for(token, cfg.operator_token.get_secret_value(), cfg.viewer_token.get_secret_value())
            if role is not None and request.url.path == "/kill-switch" and allows(role, needed):
                # the kill switch stays reachable: a valid token is never throttled here (behind a port proxy
                # every client may share one address, so someone else's failures must not lock operators out)
                return role
            decision = state.throttle.check(client, now)
            if not decision.allowed:
                refused.labels(reason="throttled").inc()
                await audit(request, "none", f"{request.method} {request.url.path}", "throttled", 429)
                raise HTTPException(
                    429,
                    "too many failed attempts; retry later",
                    headers={"Retry-After": str(int(decision.retry_after_s) + 1)},
                )
            if role is not None and allows(role, needed):  # (allows() is False for None; mypy narrows here)
                if needed == "operator":
                    state.throttle.success(client)
                return role
            code = 401 if role is None else 403
            reason = "missing or wrong bearer token" if role is None else f"{needed} token required"
            state.throttle.failure(client, now)
            refused.labels(reason="unauthenticated" if role is None else "forbidden").inc()
            await audit(
                request,
                role or "none",
                f"{request.method} {request.url.path}",
                "refused",
                code,
                {"reason": reason},
            )
            raise HTTPException(code, reason, headers={"WWW-Authenticate": "Bearer"} if code == 401 else None)

        return dep

    viewer, operator = requires("viewer"), requires("operator")

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid"}
        field_name = _field_of(first)
        msg = f"{field_name}: {first.get('msg', 'invalid')}"
        body = {
            "detail": msg,
            "field": field_name,
            "errors": [{"field": _field_of(e), "message": e.get("msg", "")} for e in errors[:10]],
        }
        if request.url.path in CONTROL_PATHS and request.method == "POST":
            await audit(request, "operator", f"POST {request.url.path}", "invalid_input", 422, {"error": msg})
        return JSONResponse(body, status_code=422)

    def services_view() -> dict[str, dict]:
        now = state.rt.clock.monotonic()  # the clock the shell stamps heartbeats' arrival on
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

    def served_model() -> dict | None:
        fresh = [
            m
            for seen, m in state.served_models.values()
            if state.rt.clock.monotonic() - seen <= settings.monitoring.heartbeat_timeout_s
        ]
        return served_model_view(fresh)

    def shards_view() -> dict[str, dict]:
        """Who owns which symbols, per sharded service, from each instance's last heartbeat (libs/common/shard.py)."""
        now, timeout = state.rt.clock.monotonic(), settings.monitoring.heartbeat_timeout_s
        out = {}
        for name in SHARDED_SERVICES:
            insts = [
                InstanceShard(
                    instance=inst,
                    index=sh.index if sh else 0,
                    count=sh.count if sh else 1,
                    symbols=tuple(sh.symbols) if sh else (),
                    alive=now - seen <= timeout,
                    age_s=now - seen,
                    status=st,
                )
                for inst, (seen, sh, st) in state.shards.get(name, {}).items()
            ]
            out[name] = ownership(insts)
        return out

    @app.get("/health", summary="Per-service heartbeat age and status (no token needed)")
    async def health() -> dict:
        svcs = services_view()
        overall = "ok" if all(s["status"] == "ok" for s in svcs.values()) else "degraded"
        return {"status": overall, "services": svcs, "kill_switch": state.latch.as_dict()}

    @app.get("/metrics", summary="Prometheus metrics of ops_api")
    async def metrics() -> Response:
        return Response(generate_latest(state.rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/kill-switch", summary="The standing kill-switch state")
    async def get_kill_switch(_: str = Depends(viewer)) -> dict:
        return state.latch.as_dict()

    @app.post("/kill-switch", summary="Engage or release; answers when risk and execution acknowledged")
    async def post_kill_switch(
        body: KillSwitchRequest,
        request: Request,
        role: str = Depends(operator),
        idempotency_key: str | None = Header(default=None, max_length=200),
    ) -> JSONResponse:
        cmd_id = (
            hashlib.sha256(f"ks:{idempotency_key}".encode()).hexdigest()[:32] if idempotency_key else None
        )
        if cmd_id and cmd_id in state.ks_results:
            return JSONResponse(
                {**state.ks_results[cmd_id], "replayed": True},
                status_code=200 if not state.ks_results[cmd_id]["missing"] else 202,
            )
        if cmd_id and cmd_id in state.ks_inflight:
            answer = await asyncio.shield(state.ks_inflight[cmd_id])
            return JSONResponse(
                {**answer, "replayed": True}, status_code=200 if not answer["missing"] else 202
            )
        actor = f"{body.actor} via ops_api ({role}@{client_of(request)})"[:100]
        same_id: dict[str, Any] = {"id": cmd_id} if cmd_id else {}  # a retried request keeps its command id
        cmd = KillSwitchCommand(
            ts=state.rt.clock.now(),
            action=body.action,
            reason=body.reason,
            actor=actor,
            flatten=body.flatten,
            **same_id,
        )
        if cmd.action == "release":  # operator authority, verified by risk and execution themselves
            try:
                cmd = sign(cmd, settings.kill_switch.release_key.get_secret_value())
            except InvalidInputError as exc:
                await audit(request, role, "kill_switch.release", "no_release_key", 503, {"error": str(exc)})
                raise HTTPException(
                    503, f"{exc}; set BNML_KILL_SWITCH__RELEASE_KEY for ops_api, risk and execution"
                ) from None
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        state.ks_inflight[cmd.id] = fut
        ev = state.ack_events[cmd.id] = asyncio.Event()
        started = time.perf_counter()
        try:
            try:
                await state.rt.bus.publish(subjects.kill_switch(), cmd)
            except Exception as exc:
                await audit(
                    request,
                    role,
                    f"kill_switch.{body.action}",
                    "publish_failed",
                    503,
                    {"command_id": cmd.id, "reason": body.reason, "error": str(exc)},
                )
                raise HTTPException(
                    503,
                    f"could not publish the command ({type(exc).__name__}); nothing changed;"
                    " use `python3 -m scripts.kill_switch --config configs/bot.yaml`",
                ) from None
            try:
                await asyncio.wait_for(ev.wait(), cfg.kill_switch_ack_timeout_s)
            except TimeoutError:
                pass
            elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            acks = state.acks.pop(cmd.id, {})
            latched = state.latched.pop(cmd.id, {})
            missing = [s for s in ACKERS if s not in acks]
            answer = {
                "command_id": cmd.id,
                "action": cmd.action,
                "reason": cmd.reason,
                "actor": cmd.actor,
                "flatten": cmd.flatten,
                "acknowledged_by": sorted(acks),
                "missing": missing,
                "elapsed_ms": elapsed_ms,
                "ack_ms": {s: round((t - started) * 1000, 3) for s, (_, t) in acks.items()},
                # engage: when execution's latch closed (no send after it), before the sweep's confirmation
                "latched_ms": {s: round((t - started) * 1000, 3) for s, t in latched.items()},
                "detail": "acknowledged"
                if not missing
                else f"no acknowledgement from {', '.join(missing)} within {cfg.kill_switch_ack_timeout_s} s;"
                " the command stands on the bus and they apply it when they read it",
                "acks": {s: a.model_dump(mode="json") for s, (a, _) in acks.items()},
            }
            await audit(
                request,
                role,
                f"kill_switch.{body.action}",
                "acknowledged" if not missing else "unacknowledged",
                200 if not missing else 202,
                answer,
            )
            log.info(
                "kill switch command via API",
                action=cmd.action,
                command_id=cmd.id,
                missing=missing,
                elapsed_ms=elapsed_ms,
            )
            if cmd_id:
                state.ks_results[cmd_id] = answer
                if len(state.ks_results) > 1000:
                    state.ks_results.pop(next(iter(state.ks_results)))
            fut.set_result(answer)
            return JSONResponse(answer, status_code=200 if not missing else 202)
        finally:
            state.ack_events.pop(cmd.id, None)
            state.latched.pop(cmd.id, None)
            state.read.discard(cmd.id)
            state.ks_inflight.pop(cmd.id, None)
            if not fut.done():
                fut.cancel()

    @app.get(
        "/status", summary="The suite at a glance (the `bnml status --json` object of docs/interfaces.md)"
    )
    async def status(_: str = Depends(viewer)) -> dict:
        async with state.rt.pool.connection() as conn:
            counters = {
                (r["service"], r["name"]): int(r["value"])
                for r in await (
                    await conn.execute("SELECT service, name, value FROM service_counters")
                ).fetchall()
            }
            row = await (
                await conn.execute(
                    "SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM fills) AS fills,"
                    " (SELECT count(*) FROM orders WHERE status = ANY(%s)) AS open_orders,"
                    " (SELECT value FROM kv_state WHERE key = 'trading_state') AS trading_state",
                    (OPEN_STATUSES,),
                )
            ).fetchone()
        assert row is not None  # a SELECT of scalar subqueries always answers one row
        ks = state.latch.as_dict()
        stored_state = row["trading_state"]
        trading_state = (
            "HALTED"
            if ks["engaged"]
            else (stored_state.get("state", "ACTIVE") if isinstance(stored_state, dict) else "ACTIVE")
        )
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
            **({"model": served} if (served := served_model()) is not None else {}),
            "shards": shards_view(),
            "urls": {
                "nats": settings.nats.url,
                "database": mask_url(settings.database.url.get_secret_value()),
                "ops_api": state.public_url,
            },
        }

    async def fetch(sql: str, params: tuple | dict = ()) -> list[dict]:
        async with state.rt.pool.connection() as conn:
            return [jsonable(dict(r)) for r in await (await conn.execute(sql, params)).fetchall()]

    @app.get("/state/account", summary="Risk's account state (kv_state.account_state) and trading state")
    async def account_state(_: str = Depends(viewer)) -> dict:
        rows = await fetch(
            "SELECT key, value, updated_at FROM kv_state WHERE key IN ('account_state', 'trading_state')"
        )
        by_key = {r["key"]: r for r in rows}
        if "account_state" not in by_key:
            raise HTTPException(
                404, "no account state recorded yet (risk has not written kv_state.account_state)"
            )
        return {
            "account_state": by_key["account_state"]["value"],
            "updated_at": by_key["account_state"]["updated_at"],
            "trading_state": by_key.get("trading_state", {}).get("value"),
        }

    @app.get("/breakers", summary="Active breakers and the latest breaker events")
    async def breakers(_: str = Depends(viewer), limit: int = Query(50, ge=1, le=500)) -> dict:
        rows = await fetch("SELECT value FROM kv_state WHERE key = 'account_state'")
        active = (
            rows[0]["value"].get("active_breakers", {}) if rows and isinstance(rows[0]["value"], dict) else {}
        )
        events = await fetch(
            "SELECT kind, breaker, effect, symbol, reason, ts FROM breaker_log ORDER BY ts DESC, id DESC"
            " LIMIT %s",
            (limit,),
        )
        return {"active": active, "events": events}

    def _window(since: datetime | None, until: datetime | None) -> None:
        for name, v in (("since", since), ("until", until)):
            if v is not None and v.tzinfo is None:
                raise HTTPException(422, f"{name}: needs a timezone (e.g. 2026-01-01T00:00:00Z)")
        if since and until and since > until:
            raise HTTPException(422, "since: after until")

    async def page(
        table: str,
        equals: dict,
        time_col: str,
        since: datetime | None,
        until: datetime | None,
        order_by: str,
        limit: int,
        offset: int,
    ) -> dict:
        """One page of a journal table: equality filters, a time window, newest first, `next_offset`."""
        _window(since, until)
        where, params = ["TRUE"], []
        for col, val in equals.items():
            if val is not None:
                where.append(f"{col} = %s")
                params.append(val)
        for op, bound in ((">=", since), ("<", until)):
            if bound is not None:
                where.append(f"{time_col} {op} %s")
                params.append(bound)
        items = await fetch(
            f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY {order_by} LIMIT %s OFFSET %s",
            (*params, limit + 1, offset),
        )
        more = len(items) > limit
        return {
            "items": items[:limit],
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        }

    @app.get("/orders", summary="The order journal, newest first (filters, pagination)")
    async def orders(
        _: str = Depends(viewer),
        symbol: str | None = Query(None, min_length=3, max_length=32, pattern=r"^[A-Z0-9]+/?[A-Z0-9]+$"),
        status: OrderStatus | None = Query(None),
        side: Side | None = Query(None),
        since: datetime | None = Query(None),
        until: datetime | None = Query(None),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> dict:
        return await page(
            "orders",
            {"symbol": symbol, "status": status, "side": side},
            "created_at",
            since,
            until,
            "created_at DESC, client_order_id DESC",
            limit,
            offset,
        )

    @app.get("/fills", summary="Fills, newest first (filters, pagination)")
    async def fills(
        _: str = Depends(viewer),
        symbol: str | None = Query(None, min_length=3, max_length=32, pattern=r"^[A-Z0-9]+/?[A-Z0-9]+$"),
        side: Side | None = Query(None),
        client_order_id: str | None = Query(None, min_length=1, max_length=36),
        since: datetime | None = Query(None),
        until: datetime | None = Query(None),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> dict:
        return await page(
            "fills",
            {"symbol": symbol, "side": side, "client_order_id": client_order_id},
            "ts",
            since,
            until,
            "ts DESC, id DESC",
            limit,
            offset,
        )

    @app.get("/incidents", summary="Incidents, newest first")
    async def incidents(
        _: str = Depends(viewer),
        state_: Literal["open", "resolved", "all"] = Query("all", alias="state"),
        severity: Literal["SEV-1", "SEV-2", "SEV-3"] | None = Query(None),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10_000_000),
    ) -> dict:
        where, params = ["TRUE"], []
        if state_ == "open":
            where.append("resolved_at IS NULL")
        elif state_ == "resolved":
            where.append("resolved_at IS NOT NULL")
        if severity:
            where.append("severity = %s")
            params.append(severity)
        items = await fetch(
            f"SELECT * FROM incidents WHERE {' AND '.join(where)} ORDER BY opened_at DESC, id DESC"
            " LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        return {"items": items, "limit": limit, "offset": offset}

    @app.get("/incidents/{incident_id}", summary="One incident with its events")
    async def incident(incident_id: int = Path(ge=1, le=2**63 - 1), _: str = Depends(viewer)) -> dict:
        rows = await fetch("SELECT * FROM incidents WHERE id = %s", (incident_id,))
        if not rows:
            raise HTTPException(404, f"incident_id: no incident {incident_id}")
        events = await fetch(
            "SELECT ts, source, summary FROM incident_events WHERE incident_id = %s ORDER BY ts, id",
            (incident_id,),
        )
        return {**rows[0], "events": events}

    async def dod_reports(days: int, last_day: date | None) -> list:
        from services.ops_api.dod_store import build_reports, thresholds_from

        async with state.rt.pool.connection() as conn:
            # wall time by design: DoD counts the machine's real days from wall-stamped heartbeat minutes
            return await build_reports(conn, days, thresholds_from(settings), datetime.now(UTC), last_day)

    @app.get("/dod/daily/{day}", summary="DoD v1 report of one UTC day, computed now from Postgres")
    async def dod_daily(day: date = Path(description="YYYY-MM-DD"), _: str = Depends(viewer)) -> dict:
        (report,) = await dod_reports(1, day)
        return report.as_dict(datetime.now(UTC))  # wall time by design (DoD: real days)

    @app.get("/dod/summary", summary="DoD v1 over the last N UTC days (today included)")
    async def dod_summary(days: int = Query(7, ge=1, le=90), _: str = Depends(viewer)) -> dict:
        reports = await dod_reports(days, None)
        now = datetime.now(UTC)  # wall time by design (DoD: real days)
        return {
            "days": days,
            "passed": sum(1 for r in reports if r.passed),
            "reports": [
                {
                    "day": r.day.isoformat(),
                    "status": r.status,
                    "violations": r.violations,
                    "figures": r.figures,
                }
                for r in reports
            ],
            "generated_at": now.isoformat(),
        }

    @app.post("/backup", summary="Force a backup now (pg_dump + model pointer)")
    async def post_backup(request: Request, role: str = Depends(operator)) -> JSONResponse:
        if state.backup_runner is None:
            raise HTTPException(503, "backups are not available in this process")
        if state.backup_lock.locked():
            await audit(request, role, "backup", "busy", 409)
            raise HTTPException(409, "a backup is already running")
        async with state.backup_lock:
            result = await state.backup_runner("api")
        code = 200 if result["ok"] else 500
        await audit(request, role, "backup", "ok" if result["ok"] else "failed", code, result)
        return JSONResponse(result, status_code=code)

    # -- the operator's view: its routers live in their own modules --------------------------------
    from services.ops_api.console import console_router, static_files
    from services.ops_api.controls import controls_router
    from services.ops_api.events import events_router
    from services.ops_api.views import journal_router

    app.include_router(journal_router(viewer, fetch, state.rt.clock.now, settings.risk.dust_usdt))
    app.include_router(events_router(viewer, state.hub))
    app.include_router(console_router(health, settings.mode))
    app.include_router(
        controls_router(
            operator,
            audit,
            state.controls,
            lambda: state.rt.bus,
            state.rt.clock.now,
            cfg.kill_switch_ack_timeout_s,
        )
    )
    app.mount("/console", static_files(), name="console")
    return app
