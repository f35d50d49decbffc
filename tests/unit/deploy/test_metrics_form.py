"""The metrics' form: histogram buckets up to 300 s where a live order can rest."""

from __future__ import annotations

import ast

from prometheus_client import CollectorRegistry

from libs.common.metrics import ServiceMetrics
from tests.unit.deploy.tooling import ROOT

RESTING = ("tick_to_order_seconds", "verdict_to_fill_seconds")  # execution: a live limit order can rest minutes


def bucket_counts(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {s.labels["le"]: s.value for m in registry.collect() for s in m.samples if s.name == f"{name}_bucket"}


def test_the_resting_order_buckets_reach_300_s_and_keep_the_fine_ones():
    registry = CollectorRegistry()
    m = ServiceMetrics("deploytest", registry=registry)
    h = m.histogram("verdict_to_fill_seconds", "test", buckets=m.RESTING_ORDER_BUCKETS)
    for seconds in (0.0004, 45.0, 200.0, 301.0):
        h.observe(seconds)
    counts = bucket_counts(registry, "bnml_deploytest_verdict_to_fill_seconds")
    assert counts["0.0005"] == 1 and counts["2.5"] == 1  # sub-millisecond hops still resolved
    assert counts["60.0"] == 2 and counts["300.0"] == 3 and counts["+Inf"] == 4
    assert max(float(le) for le in counts if le != "+Inf") == 300.0


def test_executions_order_latency_histograms_use_the_resting_order_buckets():
    tree = ast.parse((ROOT / "services/execution/shell.py").read_text())
    found = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "histogram" and call.args \
                and isinstance(call.args[0], ast.Constant) and call.args[0].value in RESTING:
            buckets = next((k.value for k in call.keywords if k.arg == "buckets"), None)
            found[call.args[0].value] = ast.unparse(buckets) if buckets is not None else None
    assert set(found) == set(RESTING), found
    assert all(v is not None and v.endswith("RESTING_ORDER_BUCKETS") for v in found.values()), found
