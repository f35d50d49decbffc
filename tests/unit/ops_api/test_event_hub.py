"""The live-update hub: bounded per-client queues, a slow client is dropped, never waited for."""

from __future__ import annotations

from services.ops_api.events import EventHub, frames


async def test_a_slow_client_is_dropped_and_the_others_keep_every_event():
    hub = EventHub(queue_size=3, replay=10)
    slow, fast = hub.join(), hub.join()
    got = []
    for i in range(5):
        hub.publish("fill", {"n": i})  # never awaits: a full queue cannot block the publisher
        got.append(fast.queue.get_nowait())
    assert [e.id for e in got] == [1, 2, 3, 4, 5]
    assert slow.dropped and slow not in hub.clients and fast in hub.clients and hub.dropped_total == 1
    assert slow.queue.qsize() == 1  # its backlog is gone: only the end-of-stream marker is left
    out = [f async for f in frames(hub, slow, keepalive_s=0.01)]
    assert out[0].startswith("retry:") and out[-1].startswith("event: dropped") and "too slow" in out[-1]


async def test_a_client_that_reconnects_gets_what_it_missed_since_its_last_event_id():
    hub = EventHub(queue_size=10, replay=4)
    for i in range(6):
        hub.publish("order", {"n": i})
    again = hub.join(last_event_id=3)
    assert [again.queue.get_nowait().id for _ in range(3)] == [4, 5, 6]
    assert hub.publish("order", {"n": 6}).frame() == 'id: 7\nevent: order\ndata: {"n":6}\n\n'


def test_the_hub_refuses_clients_beyond_its_limit_and_close_ends_every_stream():
    hub = EventHub(queue_size=1, max_clients=2)
    a, b = hub.join(), hub.join()
    assert hub.join() is None
    hub.publish("fill", {})
    hub.close()
    assert not hub.clients and a.queue.get_nowait() is None and b.queue.get_nowait() is None
