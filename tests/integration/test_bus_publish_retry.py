"""A JetStream publish that no stream answers is asked again for a moment (a stream electing its leader, or a
new stream's subjects not yet known across a cluster: CI met it on a fresh three-node cluster), and then
fails as a TemporaryError, never as a raw nats error. Counted at the stream: the message is stored once."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from libs.common import bus as bus_module
from libs.common import subjects
from libs.common.bus import Bus
from libs.common.errors import TemporaryError
from libs.common.metrics import ServiceMetrics
from tests.kit.execution import make_verdict

pytestmark = pytest.mark.integration


def _bus(url: str, name: str) -> Bus:
    return Bus(url, name, ServiceMetrics(name, registry=CollectorRegistry()))


async def test_a_publish_before_its_stream_exists_lands_once_the_stream_answers(own_nats):
    publisher, ops = _bus(own_nats.url, "publisher"), _bus(own_nats.url, "ops")
    await publisher.connect(retry_initial=False)
    await ops.connect(retry_initial=False)
    try:
        v = make_verdict()
        sending = asyncio.create_task(publisher.publish(subjects.verdict(v.symbol), v))
        await asyncio.sleep(0.3)  # the scenario: the stream comes a moment after the first try
        assert not sending.done()  # still asking, not failed
        await ops.ensure_streams()
        assert await asyncio.wait_for(sending, 10) is True  # stored, not a duplicate
        info = await ops.js.stream_info("VERDICTS")
        assert info.state.messages == 1
    finally:
        await publisher.drain()
        await ops.drain()


async def test_a_publish_no_stream_ever_answers_is_a_temporary_error(own_nats, monkeypatch):
    monkeypatch.setattr(bus_module, "NO_RESPONDERS_WAIT_S", 0.05)
    publisher = _bus(own_nats.url, "publisher")
    await publisher.connect(retry_initial=False)
    try:
        v = make_verdict()
        with pytest.raises(TemporaryError, match="no stream answered"):
            await publisher.publish(subjects.verdict(v.symbol), v)
        # positive control: with the streams there, the same publish is stored
        await publisher.ensure_streams()
        assert await publisher.publish(subjects.verdict(v.symbol), v) is True
    finally:
        await publisher.drain()
