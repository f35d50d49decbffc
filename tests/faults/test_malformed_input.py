"""Scenario 12: malformed input on every subject; every service keeps running; every bad message is
in the DLQ with a reason and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import pytest

from libs.common import subjects
from libs.common.contracts import DeadLetter, Heartbeat
from tests.helpers import ops_api_url, publish_tick, tick_barrier, wait_until
from tests.kit.execution import EXECUTION_CONFIG, make_tick, make_verdict

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


async def test_garbage_on_every_subject_is_dead_lettered_and_services_keep_serving(
    services, bus, database_url
):
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
    listened = {
        subjects.tick("BTC/USDT"),
        subjects.last("BTC/USDT"),
        subjects.signal("BTC/USDT"),
        subjects.verdict("BTC/USDT"),
        subjects.heartbeat("market_data"),
        subjects.fill("BTC/USDT"),
        subjects.market_status("BTC/USDT"),
    }
    await wait_until(
        lambda: listened <= {lt.subject for lt in letters},
        timeout=30,
        message=f"dead letters from every listened subject {sorted(listened)}",
    )
    # a marker behind the bad payloads on md.last: once both readers dead-lettered it, every bad md.last
    # payload before it has been handled (and letters counted) by each
    await tick_barrier(bus, "risk", "execution", timeout=30)
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
    await tick_barrier(bus, "execution")  # the tick is execution's newest before the verdict
    v = make_verdict(epoch_of=database_url)
    got: list = []
    from libs.common.contracts import OrderEvent

    async def on_order(ev: OrderEvent, subject: str) -> None:
        if ev.verdict_id == v.id:
            got.append(ev)

    await bus.subscribe(subjects.ALL_ORDERS, OrderEvent, on_order)
    await bus.publish(subjects.verdict("BTC/USDT"), v)
    await wait_until(lambda: got, timeout=15, message="an order event for a valid verdict")


STORM_SUBJECTS = [
    subjects.last("BTC/USDT"),
    subjects.market_status("BTC/USDT"),
    subjects.signal("BTC/USDT"),
    subjects.verdict("BTC/USDT"),
    subjects.fill("BTC/USDT"),
    subjects.order("BTC/USDT"),
    subjects.heartbeat("market_data"),
    subjects.alert("SEV-3"),
]


async def test_a_storm_of_malformed_messages_stalls_no_heartbeat_and_not_the_kill_switch(
    services, bus, tmp_path
):
    """800 malformed messages on eight subjects, one in six of 900 KiB, on a running suite: every service's
    heartbeat keeps flowing (never older than the heartbeat timeout, as seen by this test and by ops_api), no
    service is cut off by NATS as a slow consumer, and a kill-switch round trip through ops_api works."""
    import time

    import httpx

    from tests.helpers import OPERATOR_TOKEN, VIEWER_TOKEN

    services.configure(
        {
            **EXECUTION_CONFIG,
            "ops_api": {"kill_switch_ack_timeout_s": 5},
            "storage": {"backup": {"enabled": False, "dir": str(tmp_path / "b")}},
        }
    )
    ops = services.start("ops_api")
    procs = [ops] + [services.start(n) for n in ("risk", "execution", "signal", "market_data")]
    url = ops_api_url(ops)
    timeout_s = 10.0  # monitoring.heartbeat_timeout_s: older than this and a service counts as down
    last: dict[str, float] = {}
    worst: dict[str, float] = {}

    async def on_hb(hb: Heartbeat, subject: str) -> None:
        now = time.monotonic()
        if hb.service in last:
            worst[hb.service] = max(worst.get(hb.service, 0.0), now - last[hb.service])
        last[hb.service] = now

    await bus.subscribe(subjects.ALL_HEARTBEATS, Heartbeat, on_hb)
    await wait_until(lambda: {"ops_api", "risk", "execution"} <= set(last), timeout=30, message="heartbeats")
    huge = json.dumps({"blob": "x" * 900 * 1024}).encode()
    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    async def storm() -> None:
        for i in range(800):
            data = huge if i % 6 == 0 else json.dumps({"garbage": i, "ts": "never"}).encode()
            await bus.nc.publish(STORM_SUBJECTS[i % len(STORM_SUBJECTS)], data)
            if i % 40 == 0:
                await bus.nc.flush()
        await bus.nc.flush()

    seen_by_ops: dict[str, float] = {}  # the oldest heartbeat age ops_api reported per service (its own view)

    async def watch(c: httpx.AsyncClient) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                for name, svc in (await c.get("/health", timeout=5)).json()["services"].items():
                    if svc["heartbeat_age_s"] is not None:
                        seen_by_ops[name] = max(seen_by_ops.get(name, 0.0), svc["heartbeat_age_s"])
            await asyncio.sleep(0.25)  # the watcher's poll interval

    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        watcher = asyncio.create_task(watch(c))
        flood = asyncio.create_task(storm())
        await asyncio.sleep(0.5)  # the storm is under way
        r = await c.post("/kill-switch", json={"action": "engage", "reason": "during the storm"}, headers=op)
        assert r.status_code == 200, r.text  # both acknowledged within the ack timeout
        await flood
        started = time.monotonic()
        # the services work through what they were sent; heartbeats keep coming meanwhile
        await wait_until(
            lambda: all(last[s] > started + 2 for s in ("ops_api", "risk", "execution")),
            timeout=60,
            message="heartbeats after the storm",
        )
        assert (await c.get("/kill-switch", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})).json()[
            "engaged"
        ]
        r = await c.post("/kill-switch", json={"action": "release", "reason": "storm over"}, headers=op)
        assert r.status_code == 200, r.text
        watcher.cancel()
    assert seen_by_ops and all(age <= timeout_s for age in seen_by_ops.values()), (
        f"heartbeat ages ops_api saw during the storm: {seen_by_ops}"
    )
    assert all(p.alive for p in procs), [p.name for p in procs if not p.alive]
    # nobody fell so far behind that NATS cut it off as a slow consumer (that halts it: unknown = engaged)
    assert not [p.name for p in procs if "nats disconnected" in p.logs()], "a service lost NATS in the storm"
    assert all(worst.get(s, 0.0) <= timeout_s for s in last), f"heartbeat gaps during the storm: {worst}"
