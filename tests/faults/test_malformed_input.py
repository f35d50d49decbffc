"""Scenario 12: malformed input on every subject; every service keeps running; every bad message is
in the DLQ with a reason and counted."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from libs.common import subjects
from libs.common.contracts import DeadLetter, Heartbeat
from tests.faults.support import EXECUTION_CONFIG, make_tick, make_verdict
from tests.helpers import publish_tick, wait_until

pytestmark = pytest.mark.faults

SUBJECTS = [
    subjects.tick("BTC/USDT"),
    # md.last is conflated (risk and execution keep the newest valid tick per symbol), yet every payload is
    # validated as it arrives: garbage is dead-lettered even between market_data's own valid ticks
    subjects.last("BTC/USDT"),
    subjects.candle("BTC/USDT", "1m"),
    subjects.market_status("BTC/USDT"),
    subjects.signal("BTC/USDT"),
    subjects.drift(),
    subjects.verdict("BTC/USDT"),
    subjects.fill("BTC/USDT"),
    subjects.heartbeat("market_data"),
    subjects.alert("SEV-2"),
]


def payloads() -> dict[str, bytes]:
    tick = make_tick().model_dump(mode="json")
    return {
        "random_bytes": os.urandom(256),
        "wrong_schema": json.dumps({"hello": "world"}).encode(),
        "huge": json.dumps({"blob": "x" * 900_000}).encode(),
        "wrong_types": json.dumps({**tick, "bid": "not-a-number", "ts": 12}).encode(),
        "unknown_field": json.dumps({**tick, "extra_field": True}).encode(),
    }


async def test_garbage_on_every_subject_is_dead_lettered_and_services_keep_serving(services, bus):
    services.configure(EXECUTION_CONFIG)
    procs = [services.start(n) for n in ("ops_api", "risk", "execution", "signal", "market_data")]
    letters: list[DeadLetter] = []

    async def on_letter(letter: DeadLetter, subject: str) -> None:
        letters.append(letter)

    await bus.subscribe(subjects.ALL_DLQ, DeadLetter, on_letter)
    sent = 0
    for subject in SUBJECTS:
        for _kind, data in payloads().items():
            await bus.nc.publish(subject, data)
            sent += 1
    await bus.nc.flush()
    # every subject that some service listens to yields at least one dead letter per bad message
    listened = {subjects.tick("BTC/USDT"), subjects.last("BTC/USDT"), subjects.signal("BTC/USDT"), subjects.verdict("BTC/USDT"),
                subjects.heartbeat("market_data"), subjects.fill("BTC/USDT"), subjects.market_status("BTC/USDT")}
    await wait_until(lambda: listened <= {lt.subject for lt in letters}, timeout=30,
                     message=f"dead letters from every listened subject {sorted(listened)}")
    await asyncio.sleep(1.0)
    assert all(lt.reason for lt in letters)
    assert all(lt.payload_size > 0 for lt in letters)
    huge = [lt for lt in letters if lt.payload_size > 800_000]
    assert huge and all(len(lt.payload) <= 4096 for lt in huge)  # the DLQ keeps a bounded excerpt
    by_subject = {}
    for lt in letters:
        by_subject.setdefault(lt.subject, set()).add(lt.service)
    assert subjects.signal("BTC/USDT") in by_subject and "risk" in by_subject[subjects.signal("BTC/USDT")]
    assert "execution" in by_subject.get(subjects.verdict("BTC/USDT"), set())
    for reader in ("risk", "execution"):  # each bad md.last payload once, none hidden by a newer good tick
        on_last = [lt for lt in letters if lt.subject == subjects.last("BTC/USDT") and lt.service == reader]
        assert len(on_last) == len(payloads()), (reader, [lt.reason[:60] for lt in on_last])

    # every service is alive, still heartbeating, and counts its dead letters
    beats: dict[str, Heartbeat] = {}

    async def on_hb(hb: Heartbeat, subject: str) -> None:
        beats[hb.service] = hb

    await bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, on_hb)
    await wait_until(lambda: len(beats) == 5, timeout=15, message="heartbeats from all five")
    assert all(p.alive for p in procs), [p.name for p in procs if not p.alive]
    counted = sum(hb.counters.get("dlq", 0) for hb in beats.values())
    assert counted >= len(letters) - 5  # counters lag a heartbeat at most

    # and keeps serving: a valid verdict still becomes an order
    await publish_tick(bus, make_tick())
    await asyncio.sleep(0.2)
    v = make_verdict()
    got: list = []
    from libs.common.contracts import OrderEvent

    async def on_order(ev: OrderEvent, subject: str) -> None:
        if ev.verdict_id == v.id:
            got.append(ev)

    await bus.subscribe(subjects.ALL_ORDERS, OrderEvent, on_order)
    await bus.publish(subjects.verdict("BTC/USDT"), v)
    await wait_until(lambda: got, timeout=15, message="an order event for a valid verdict")
