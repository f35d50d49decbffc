"""A bus handler's log lines carry its message's subject and id, set once per message."""

import asyncio

import structlog

from libs.common.logging import add_handling, begin_handling, current_handling, end_handling, handling


def test_handling_sets_subject_and_msg_id_only_while_the_handler_runs():
    assert current_handling() == {}
    with handling("md.tick.BTCUSDT", "abc"):
        assert current_handling() == {"subject": "md.tick.BTCUSDT", "msg_id": "abc"}
    assert current_handling() == {}


def test_the_bus_hot_path_form_nests_and_restores():
    outer = begin_handling("a", 1)
    inner = begin_handling("b", 2)
    assert current_handling() == {"subject": "b", "msg_id": "2"}
    end_handling(inner)
    assert current_handling() == {"subject": "a", "msg_id": "1"}
    end_handling(outer)
    assert current_handling() == {}


def test_concurrent_handlers_each_keep_their_own_binding():
    async def handler(i, out):
        with handling(f"s.{i}", i):
            await asyncio.sleep(0)
            out.append(current_handling()["msg_id"])

    async def main():
        out = []
        await asyncio.gather(*(asyncio.create_task(handler(i, out)) for i in range(3)))
        return sorted(out)

    assert asyncio.run(main()) == ["0", "1", "2"]


def test_a_line_logged_inside_carries_them_and_a_key_given_by_hand_wins():
    with structlog.testing.capture_logs(processors=[add_handling]) as logs:
        with handling("risk.verdict.BTCUSDT", "m1"):
            structlog.get_logger().info("handled")
            structlog.get_logger().info("forwarded", subject="dlq.x")
        structlog.get_logger().info("outside")
    assert logs == [
        {"event": "handled", "log_level": "info", "subject": "risk.verdict.BTCUSDT", "msg_id": "m1"},
        {"event": "forwarded", "log_level": "info", "subject": "dlq.x", "msg_id": "m1"},
        {"event": "outside", "log_level": "info"},
    ]


def test_the_configured_json_lines_carry_them(capsys):
    import json

    from libs.common.logging import configure_logging

    log = configure_logging("test", level="INFO", json=True)
    try:
        with handling("risk.verdict.BTCUSDT", "m2"):
            log.info("inside")
        log.info("after")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        inside, after = (next(x for x in lines if x["event"] == e) for e in ("inside", "after"))
        assert (inside["subject"], inside["msg_id"]) == ("risk.verdict.BTCUSDT", "m2")
        assert "msg_id" not in after
    finally:
        structlog.reset_defaults()
