"""The send fence: the kill switch's notice waits for every request past the gate, and only for those."""

from __future__ import annotations

import asyncio

from services.execution.fence import SendFence


async def test_drained_waits_for_every_request_in_flight_and_counts_them():
    fence = SendFence()
    order: list[str] = []

    async def send(name: str, gate_open: asyncio.Event) -> None:
        with fence.sending():
            await gate_open.wait()  # the rate limiter / the HTTP connect yielding
            order.append(f"{name} sent")

    a, b = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(send("a", a)), asyncio.create_task(send("b", b))]
    await asyncio.sleep(0)
    assert fence.in_flight == 2

    async def notice() -> None:
        n = await fence.drained()
        order.append(f"notice after {n}")

    waiter = asyncio.create_task(notice())
    await asyncio.sleep(0)
    a.set()
    await asyncio.sleep(0.01)
    assert order == ["a sent"], "the notice went out while a request was still in flight"
    b.set()
    await asyncio.gather(waiter, *tasks)
    assert order == ["a sent", "b sent", "notice after 2"]
    assert fence.in_flight == 0


async def test_drained_does_not_yield_when_nothing_is_in_flight():
    fence = SendFence()
    coro = fence.drained()
    try:
        coro.send(None)
    except StopIteration as done:
        assert done.value == 0
    else:
        raise AssertionError("drained() yielded with nothing in flight: the latch notice would be delayed")


async def test_a_request_that_fails_leaves_the_fence():
    fence = SendFence()
    try:
        with fence.sending():
            raise TimeoutError("request timed out")
    except TimeoutError:
        pass
    assert fence.in_flight == 0
    assert await asyncio.wait_for(fence.drained(), 1) == 0
