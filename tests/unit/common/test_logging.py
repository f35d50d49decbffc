"""A bus handler's log lines carry its message's subject and id, bound once."""

import asyncio

import structlog

from libs.common.logging import handling


def test_handling_binds_subject_and_msg_id_only_while_the_handler_runs():
    assert "msg_id" not in structlog.contextvars.get_contextvars()
    with handling("md.tick.BTCUSDT", "abc"):
        assert structlog.contextvars.get_contextvars() == {"subject": "md.tick.BTCUSDT", "msg_id": "abc"}
    assert "msg_id" not in structlog.contextvars.get_contextvars()


def test_concurrent_handlers_each_keep_their_own_binding():
    async def handler(i, out):
        with handling(f"s.{i}", i):
            await asyncio.sleep(0)
            out.append(structlog.contextvars.get_contextvars()["msg_id"])

    async def main():
        out = []
        await asyncio.gather(*(asyncio.create_task(handler(i, out)) for i in range(3)))
        return sorted(out)

    assert asyncio.run(main()) == ["0", "1", "2"]


def test_a_line_logged_inside_carries_them():
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        with handling("risk.verdict.BTCUSDT", "m1"):
            structlog.get_logger().info("handled")
    assert logs == [
        {"event": "handled", "log_level": "info", "subject": "risk.verdict.BTCUSDT", "msg_id": "m1"}
    ]
