"""`bnml status` shows the model the running signal service serves, and says when the registry's differs."""

from __future__ import annotations

import io

from bnml import ui
from bnml.commands.suite import combine_model, render_status
from services.ops_api.app import served_model_view

REGISTRY = {"version": "btcusdt-1h-new", "gate_passed": True, "warning": ""}
SERVED = {
    "version": "bootstrap-1s-old",
    "gate_passed": False,
    "warning": "model bootstrap-1s-old has not passed the promotion gate (trained on synthetic data)",
}
STATUS = {
    "mode": "paper",
    "trading_state": "ACTIVE",
    "kill_switch": {"engaged": False, "known": True, "since": None, "reason": None},
    "counts": {"ticks": 1},
    "services": {"signal": {"status": "ok", "heartbeat_age_s": 0.5}},
    "urls": {},
}


def _render(model: dict) -> str:
    out = io.StringIO()
    render_status({**STATUS, "model": model}, ui.console(out))
    return out.getvalue()


def test_the_served_model_wins_and_a_differing_registry_is_a_warning():
    m = combine_model(served_model_view([SERVED]), REGISTRY)
    assert m["version"] == "bootstrap-1s-old" and m["source"] == "signal" and m["gate_passed"] is False
    assert m["registry_current"] == "btcusdt-1h-new" and m["differs"] is True
    assert "serves bootstrap-1s-old, the registry's current is btcusdt-1h-new" in m["warning"]
    text = _render(m)
    assert "model bootstrap-1s-old (served) gate NOT passed" in text.splitlines()[0]
    assert "WARNING model bootstrap-1s-old" in text and "registry's current is btcusdt-1h-new" in text


def test_same_model_no_difference_and_no_heartbeat_falls_back_to_the_registry():
    same = combine_model(served_model_view([{**REGISTRY}]), REGISTRY)
    assert same["version"] == "btcusdt-1h-new" and "differs" not in same and same["warning"] == ""
    assert "WARNING" not in _render(same)
    fallback = combine_model(None, {**REGISTRY, "gate_passed": False, "warning": "ungated"})
    assert fallback["source"] == "registry" and fallback["version"] == "btcusdt-1h-new"
    unreadable = combine_model(
        served_model_view([SERVED]), {"version": None, "gate_passed": None, "warning": "x"}
    )
    assert "differs" not in unreadable and unreadable["warning"] == SERVED["warning"]


def test_signal_instances_that_disagree_are_a_warning():
    view = served_model_view([SERVED, {**REGISTRY}])
    assert view["instances"] == 2 and view["gate_passed"] is False
    assert "signal instances serve different models (bootstrap-1s-old, btcusdt-1h-new)" in view["warning"]
    assert served_model_view([]) is None
