"""Operator controls short of the kill switch, over HTTP (operator token, audited): `POST /control` with
`pause` (new entries stop, trading goes REDUCING), `resume`, or `exit` one symbol's position.

ops_api only asks: it publishes a `TradingControlCommand` and answers with what risk did
(`TradingControlResult`). The command is not kept on a stream, so when risk does not answer in time the
answer says so (202): a risk that was not running never applies it later by surprise.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.common import subjects
from libs.common.contracts import TradingControlCommand, TradingControlResult
from libs.common.contracts.control import symbol_error

Audit = Callable[..., Awaitable[None]]


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["pause", "resume", "exit"]
    symbol: str | None = Field(
        default=None,
        min_length=3,
        max_length=32,
        pattern=r"^[A-Z0-9]+/[A-Z0-9]+$",
        description="exit only, ccxt form (BTC/USDT)",
    )
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(default="ops_api", min_length=1, max_length=100, pattern=r"^[\w.@:\- ]+$")

    @model_validator(mode="after")
    def _symbol_only_for_exit(self) -> ControlRequest:
        if error := symbol_error(self.action, self.symbol):
            raise ValueError(error)
        return self


class ControlDesk:
    """Waits for risk's answer to each command this process sent."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future] = {}
        self.answers: dict[str, dict] = {}  # idempotency: command id -> answer (bounded)

    async def attach(self, bus) -> None:
        await bus.subscribe(subjects.ALL_TRADING_CONTROL_RESULTS, TradingControlResult, self._on_result)

    async def _on_result(self, res: TradingControlResult, subject: str) -> None:
        fut = self.waiting.get(res.command_id)
        if fut is not None and not fut.done():
            fut.set_result(res)

    def remember(self, command_id: str, answer: dict) -> None:
        self.answers[command_id] = answer
        if len(self.answers) > 1000:
            self.answers.pop(next(iter(self.answers)))


def controls_router(
    operator: Callable, audit: Audit, desk: ControlDesk, bus_of: Callable, now: Callable, timeout_s: float
) -> APIRouter:
    r = APIRouter(tags=["control"])

    @r.post("/control", summary="Pause or resume new entries, or exit one symbol's position (through risk)")
    async def post_control(
        body: ControlRequest,
        request: Request,
        role: str = Depends(operator),
        idempotency_key: str | None = Header(default=None, max_length=200),
    ) -> JSONResponse:
        cmd_id = (
            hashlib.sha256(f"ctl:{idempotency_key}".encode()).hexdigest()[:32] if idempotency_key else None
        )
        if cmd_id and cmd_id in desk.answers:
            return JSONResponse(
                {**desk.answers[cmd_id], "replayed": True}, status_code=desk.answers[cmd_id]["code"]
            )
        if cmd_id and cmd_id in desk.waiting:  # the same request again while the first waits: one command
            try:
                first = await asyncio.wait_for(asyncio.shield(desk.waiting[cmd_id]), timeout_s)
            except TimeoutError:
                raise HTTPException(
                    409, "the same request (Idempotency-Key) is still waiting for risk"
                ) from None
            return JSONResponse(
                {
                    **first.model_dump(mode="json", exclude={"schema_version", "id", "ts"}),
                    "symbol": body.symbol,
                    "replayed": True,
                },
                status_code=200 if first.accepted else 409,
            )
        client = request.client.host if request.client else "unknown"
        actor = f"{body.actor} via ops_api ({role}@{client})"[:100]
        same_id: dict[str, Any] = {"id": cmd_id} if cmd_id else {}  # a retried request keeps its command id
        cmd = TradingControlCommand(
            ts=now(),
            action=body.action,
            symbol=body.symbol,
            reason=body.reason,
            actor=actor,
            **same_id,
        )
        fut = desk.waiting[cmd.id] = asyncio.get_running_loop().create_future()
        try:
            try:
                await bus_of().publish(subjects.trading_control(), cmd)
            except Exception as exc:
                await audit(
                    request,
                    role,
                    f"control.{body.action}",
                    "publish_failed",
                    503,
                    {"command_id": cmd.id, "error": str(exc)},
                )
                raise HTTPException(
                    503, f"could not publish the command ({type(exc).__name__}); nothing changed"
                ) from None
            try:
                res: TradingControlResult | None = await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                res = None
        finally:
            desk.waiting.pop(cmd.id, None)
        answer: dict[str, Any]
        if res is None:
            code, outcome = 202, "unanswered"
            answer = {
                "command_id": cmd.id,
                "action": body.action,
                "symbol": body.symbol,
                "accepted": None,
                "detail": f"risk did not answer within {timeout_s} s; the command is not kept, so check "
                "/status and send it again if needed",
            }
        else:
            code, outcome = (200, "applied") if res.accepted else (409, "refused")
            answer = {
                **res.model_dump(mode="json", exclude={"schema_version", "id", "ts"}),
                "symbol": body.symbol,
            }
            if not res.accepted:
                answer["detail"] = f"risk refused {body.action}: {res.detail}"
        answer["code"] = code
        await audit(request, role, f"control.{body.action}", outcome, code, {**answer, "reason": body.reason})
        if res is not None:  # an unanswered command is not an answer: a retry sends it again
            desk.remember(cmd.id, answer)
        return JSONResponse(answer, status_code=code)

    return r
