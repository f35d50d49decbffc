"""Live updates for people: trading-state changes, fills, order events, breaker and kill-switch events
(commands, latches, acknowledgements) as a server-sent-events stream (`GET /events`, viewer token).

Each client has a bounded queue. Publishing never waits: a client whose queue is full is dropped (it gets a
`dropped` event and the stream ends; it reconnects and resumes with `Last-Event-ID` from a short replay
ring), so a slow phone can never slow ops_api or the other clients.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import StreamingResponse

from libs.common import subjects
from libs.common.contracts import (
    BreakerCleared,
    BreakerTripped,
    Fill,
    KillSwitchAcknowledged,
    KillSwitchCommand,
    OrderEvent,
    TradingControlResult,
    TradingStateChanged,
)

QUEUE_SIZE = 256  # events a client may lag behind before it is dropped
REPLAY = 512  # events kept for clients that reconnect with Last-Event-ID
MAX_CLIENTS = 64
KEEPALIVE_S = 15.0

# subject -> (event type, contract): what the stream carries
FEEDS = [
    (subjects.ALL_FILLS, "fill", Fill),
    (subjects.ALL_ORDERS, "order", OrderEvent),
    (subjects.trading_state(), "trading_state", TradingStateChanged),
    (subjects.breaker_tripped(), "breaker_tripped", BreakerTripped),
    (subjects.breaker_cleared(), "breaker_cleared", BreakerCleared),
    (subjects.kill_switch(), "kill_switch", KillSwitchCommand),
    (subjects.ALL_KILL_SWITCH_LATCHED, "kill_switch_latched", KillSwitchAcknowledged),
    (subjects.ALL_KILL_SWITCH_ACKS, "kill_switch_ack", KillSwitchAcknowledged),
    (subjects.ALL_TRADING_CONTROL_RESULTS, "control_result", TradingControlResult),
]


@dataclass(eq=False)  # identity: a client is one connection
class Client:
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: str  # JSON, encoded once for every client

    def frame(self) -> str:
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n"


class EventHub:
    """Fan-out of events to the connected clients (no I/O; the caller runs it on the event loop)."""

    def __init__(self, queue_size: int = QUEUE_SIZE, replay: int = REPLAY, max_clients: int = MAX_CLIENTS):
        self.queue_size, self.max_clients = queue_size, max_clients
        self.clients: set[Client] = set()
        self.recent: deque[Event] = deque(maxlen=replay)
        self._ids = itertools.count(1)
        self.dropped_total = 0
        self.published_total = 0

    def join(self, last_event_id: int | None = None) -> Client | None:
        """A new client, with what it missed since `last_event_id` already queued; None when full."""
        if len(self.clients) >= self.max_clients:
            return None
        client = Client(asyncio.Queue(self.queue_size))
        if last_event_id is not None:
            for ev in [e for e in self.recent if e.id > last_event_id][-self.queue_size :]:
                client.queue.put_nowait(ev)
        self.clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    def publish(self, type_: str, payload: dict) -> Event:
        ev = Event(next(self._ids), type_, json.dumps(payload, separators=(",", ":"), default=str))
        self.recent.append(ev)
        self.published_total += 1
        for client in list(self.clients):
            try:
                client.queue.put_nowait(ev)
            except asyncio.QueueFull:
                self._drop(client)
        return ev

    def _drop(self, client: Client) -> None:
        """Too slow: empty its queue and leave only the end-of-stream marker."""
        client.dropped = True
        self.clients.discard(client)
        self.dropped_total += 1
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    def close(self) -> None:
        """Shutting down: every stream ends."""
        for client in list(self.clients):
            self.clients.discard(client)
            if client.queue.full():
                client.queue.get_nowait()
            client.queue.put_nowait(None)


async def attach(bus, hub: EventHub) -> None:
    """Subscribe the feeds (plain subscriptions: live events only; the journal endpoints have the history)."""
    for subject, type_, model in FEEDS:

        async def on_msg(msg, subject: str, type_: str = type_) -> None:
            hub.publish(type_, {"subject": subject, **msg.model_dump(mode="json")})

        await bus.subscribe(subject, model, on_msg)


async def frames(hub: EventHub, client: Client, keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[str]:
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                ev = await asyncio.wait_for(client.queue.get(), keepalive_s)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if ev is None:
                reason = "too slow: reconnect with Last-Event-ID" if client.dropped else "server stopping"
                yield f"event: dropped\ndata: {json.dumps({'reason': reason})}\n\n"
                return
            yield ev.frame()
    finally:
        hub.leave(client)


def events_router(viewer: Callable, hub: EventHub) -> APIRouter:
    r = APIRouter()

    # Out of the OpenAPI schema: an endless stream cannot be fuzzed request by request (its auth is tested).
    @r.get("/events", include_in_schema=False)
    async def events(
        _: str = Depends(viewer), last_event_id: str | None = Header(default=None, max_length=20)
    ) -> StreamingResponse:
        last = None
        if last_event_id:
            if not last_event_id.isdigit():
                raise HTTPException(422, "last-event-id: a number (the id of the last event received)")
            last = int(last_event_id)
        client = hub.join(last)
        if client is None:
            raise HTTPException(503, f"too many live clients ({hub.max_clients}); use the JSON endpoints")
        return StreamingResponse(
            frames(hub, client),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return r
