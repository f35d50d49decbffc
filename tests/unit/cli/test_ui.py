"""bnml/ui.py and the human output built on it: colour on a terminal only, NO_COLOR honoured, plain when piped."""

from __future__ import annotations

import io

import pytest

from bnml import ui
from bnml.commands.state import render_state
from bnml.commands.suite import render_status
from bnml.launcher import status_line_text

ESC = "\x1b["


class Terminal(io.StringIO):
    """What a terminal looks like to the code: a stream whose isatty() is true."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_colour_env(monkeypatch):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)


STATUS = {
    "mode": "paper",
    "trading_state": "HALTED",
    "kill_switch": {"engaged": True, "since": "2026-12-01T10:00:00+00:00", "reason": "drill"},
    "counts": {
        "ticks": 120,
        "signals": 7,
        "verdicts_approved": 3,
        "verdicts_refused": 4,
        "orders": 3,
        "fills": 2,
        "open_orders": 1,
        "dlq": 0,
    },
    "services": {
        "market_data": {"heartbeat_age_s": 0.4, "status": "ok"},
        "risk": {"heartbeat_age_s": 31.0, "status": "stale"},
    },
    "urls": {
        "nats": "nats://127.0.0.1:4222",
        "database": "postgresql://bnml:***@db/bnml",
        "ops_api": "http://127.0.0.1:8000",
    },
}


def _render(stream, fn=render_status, data=STATUS) -> str:
    fn(data, ui.console(stream))
    return stream.getvalue()


def test_piped_output_is_plain_text_without_escape_codes_or_boxes():
    text = _render(io.StringIO())
    assert ESC not in text and "─" not in text
    assert "mode paper  trading HALTED  kill switch ENGAGED since 2026-12-01T10:00:00+00:00 (drill)" in text
    lines = text.splitlines()
    assert (
        lines[1]
        == "counts  ticks=120  signals=7  verdicts_approved=3  verdicts_refused=4  orders=3  fills=2  open_orders=1  dlq=0"
    )
    assert any(line.split() == ["risk", "stale", "31.0"] for line in lines)
    assert all(line == line.rstrip() for line in lines)  # no padding after the last column


def test_piped_output_is_not_cut_at_80_columns():
    long_reason = "r" * 300
    data = {**STATUS, "kill_switch": {**STATUS["kill_switch"], "reason": long_reason}}
    assert f"({long_reason})" in _render(io.StringIO(), data=data).splitlines()[0]


def test_a_terminal_gets_colour():
    text = _render(Terminal())
    assert ESC in text and "stale" in text


def test_no_color_on_a_terminal_turns_colour_off(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    text = _render(Terminal())
    assert ESC not in text and "HALTED" in text
    monkeypatch.setenv("NO_COLOR", "")  # empty: not set (no-color.org)
    assert ESC in _render(Terminal())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert ESC not in _render(Terminal())


def test_force_color_does_not_colour_a_pipe(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert ESC not in _render(io.StringIO())


def test_values_are_never_read_as_markup():
    data = {**STATUS, "kill_switch": {**STATUS["kill_switch"], "reason": "[bold]not markup[/bold]"}}
    assert "([bold]not markup[/bold])" in _render(io.StringIO(), data=data)


def test_unknown_kill_switch_state_reads_as_unknown_not_off():
    data = {**STATUS, "kill_switch": {"engaged": True, "known": False, "since": None, "reason": None}}
    assert "kill switch UNKNOWN" in _render(io.StringIO(), data=data)


def test_model_is_shown_when_the_status_has_it():
    data = {**STATUS, "model": {"version": "20261201T000000Z-abc", "gate_passed": False}}
    assert "model 20261201T000000Z-abc gate NOT passed" in _render(io.StringIO(), data=data).splitlines()[0]


def test_launcher_status_line_is_one_plain_line_when_piped():
    out = io.StringIO()
    ui.console(out).print(status_line_text(STATUS))
    assert out.getvalue() == (
        "paper HALTED kill-switch=ENGAGED | ticks=120 signals=7 approved=3 refused=4 orders=3 "
        "fills=2 open=1 dlq=0 | market_data:ok risk:stale\n"
    )
    term = Terminal()
    ui.console(term).print(status_line_text(STATUS))
    assert ESC in term.getvalue()


def test_state_tables_list_positions_and_breakers():
    state = {
        "account_state": {
            "equity_usdt": "1000",
            "peak_equity_usdt": "1010",
            "drawdown_pct": 0.99,
            "cash_usdt": "900",
            "daily_realized_usdt": "-12.5",
            "weekly_realized_usdt": "-12.5",
            "market_volatility_ratio": 1.0,
            "market_drift_detected": False,
            "positions": {"ETH/USDT": "0.01"},
            "average_cost": {"ETH/USDT": "3000"},
            "exposure_usdt": {"ETH/USDT": "30"},
            "breakers": [
                {
                    "breaker": "daily_loss",
                    "effect": "reduce_only",
                    "scope": "global",
                    "since": "t0",
                    "until": None,
                    "reason": "daily realized -12.5 below -10",
                }
            ],
            "ts": "t1",
        },
        "trading_state": {"state": "REDUCING", "since": "t0", "reason": "daily loss"},
        "recent_events": [
            {
                "ts": "t0",
                "kind": "breaker tripped",
                "name": "daily_loss",
                "symbol": None,
                "detail": "daily realized -12.5 below -10",
            }
        ],
    }
    lines = _render(io.StringIO(), render_state, state).splitlines()
    assert lines[0] == "trading REDUCING  since t0  daily loss"
    assert ["ETH/USDT", "0.01", "3000", "30"] in [line.split() for line in lines]
    assert any(line.split()[:4] == ["daily_loss", "reduce_only", "global", "t0"] for line in lines)
    assert "recent events" in lines and lines[-1] == "updated t1"


def test_progress_on_a_pipe_prints_a_start_and_an_end_line_only():
    out = io.StringIO()
    assert list(ui.track(range(5), "training", stream=out)) == [0, 1, 2, 3, 4]
    assert out.getvalue() == "training: started (5 to do)\ntraining: done (5/5)\n"


def test_progress_on_a_terminal_draws_a_bar():
    term = Terminal()
    with ui.progress("download", 3, stream=term) as advance:
        for _ in range(3):
            advance(note="BTCUSDT")
    assert "download" in term.getvalue() and "3/3" in term.getvalue() and ESC in term.getvalue()
