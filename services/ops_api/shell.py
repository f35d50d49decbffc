"""ops_api shell: serves the HTTP API with uvicorn inside the service runtime and records heartbeats."""

from __future__ import annotations

import asyncio
import socket
import time

import uvicorn

from libs.common import subjects
from libs.common.contracts import Heartbeat, KillSwitchAcknowledged, KillSwitchCommand
from libs.common.kill_switch import KillSwitchLatch, refresh_latch
from libs.common.service import Runtime
from libs.common.settings import refuse_placeholder_secrets
from services.ops_api.app import OpsState, create_app
from services.ops_api.recorder import HeartbeatRecorder


class OpsApiService:
    name = "ops_api"
    needs_db = True

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.latch = KillSwitchLatch()

    async def start(self, rt: Runtime) -> None:
        self.rt = rt
        refuse_placeholder_secrets(rt.settings)
        cfg = rt.settings.ops_api
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port))
        port = sock.getsockname()[1]
        self.state = OpsState(rt=rt, latch=self.latch, public_url=f"http://{cfg.host}:{port}")
        self.recorder = HeartbeatRecorder(rt.pool)
        await refresh_latch(rt.bus, self.latch, rt.log)
        rt.bus.on_disconnect.append(lambda: self.latch.set_unknown("lost NATS connection"))
        rt.bus.on_reconnect.append(lambda: refresh_latch(rt.bus, self.latch, rt.log))
        await rt.bus.subscribe(subjects.kill_switch(), KillSwitchCommand, self._on_kill_switch)
        await rt.bus.subscribe(subjects.ALL_KILL_SWITCH_ACKS, KillSwitchAcknowledged, self._on_ack)
        await rt.bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, self._on_heartbeat)
        config = uvicorn.Config(create_app(self.state), log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        rt.spawn(self.server.serve(sockets=[sock]), "http")
        rt.log.info("ops api listening", url=self.state.public_url)

    async def _on_kill_switch(self, cmd: KillSwitchCommand, subject: str) -> None:
        self.latch.apply(cmd)

    async def _on_ack(self, ack: KillSwitchAcknowledged, subject: str) -> None:
        self.state.on_ack(ack)

    async def _on_heartbeat(self, hb: Heartbeat, subject: str) -> None:
        self.state.last_seen[hb.service] = (time.monotonic(), hb.status)
        await self.recorder.record(hb)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await asyncio.sleep(0.1)

    def health(self) -> tuple[str, str]:
        return "ok", ""
