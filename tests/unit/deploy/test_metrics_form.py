"""The metrics' form: histogram buckets up to 300 s where a live order can rest; what every service measures
alike under one name with a `service` label (the per-service names kept for one release); dashboards and rules
on the shared names."""

from __future__ import annotations

import ast
import json
import re

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.metrics import SHARED, ServiceMetrics
from tests.unit.deploy.tooling import GRAFANA_DIR, PROM_DIR, ROOT, SERVICES

RESTING = (
    "tick_to_order_seconds",
    "verdict_to_fill_seconds",
)  # execution: a live limit order can rest minutes


def bucket_counts(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {
        s.labels["le"]: s.value for m in registry.collect() for s in m.samples if s.name == f"{name}_bucket"
    }


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
        if (
            isinstance(call, ast.Call)
            and getattr(call.func, "attr", "") == "histogram"
            and call.args
            and isinstance(call.args[0], ast.Constant)
            and call.args[0].value in RESTING
        ):
            buckets = next((k.value for k in call.keywords if k.arg == "buckets"), None)
            found[call.args[0].value] = ast.unparse(buckets) if buckets is not None else None
    assert set(found) == set(RESTING), found
    assert all(v is not None and v.endswith("RESTING_ORDER_BUCKETS") for v in found.values()), found


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    """The registry as Prometheus parses its /metrics: (sample name, sorted labels) -> value."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_what_every_service_measures_is_also_one_name_with_a_service_label():
    registry = CollectorRegistry()
    risk, signal = ServiceMetrics("risk", registry=registry), ServiceMetrics("signal", registry=registry)
    for m in (risk, signal):  # what libs/common/bus.py declares for every service
        m.gauge("nats_connected", "1 while connected to NATS")
        m.counter("nats_reconnects_total", "Reconnections to NATS")
        m.counter("nats_errors_total", "Errors reported by the NATS client", ["kind"])
    risk.dlq.labels(subject="signal.BTCUSDT").inc(2)
    signal.handler_errors.labels(subject="md.tick.BTCUSDT").inc()
    risk.gauge("nats_connected", "").set(1)
    signal.counter("nats_reconnects_total", "").inc(3)
    signal.counter("nats_errors_total", "", ["kind"]).labels(kind="slow_consumer").inc()
    risk.gauge("equity_usdt", "not shared").set(5)
    got = scrape(registry)

    def shared(name: str, service: str, **labels: str) -> float:
        return got[(name, tuple(sorted({"service": service, **labels}.items())))]

    assert shared("bnml_up", "risk") == shared("bnml_up", "signal") == 1
    assert shared("bnml_dlq_messages_total", "risk", subject="signal.BTCUSDT") == 2
    assert shared("bnml_handler_errors_total", "signal", subject="md.tick.BTCUSDT") == 1
    assert shared("bnml_nats_connected", "risk") == 1 and shared("bnml_nats_connected", "signal") == 0
    assert (
        shared("bnml_nats_reconnects_total", "signal") == 3
        and shared("bnml_nats_reconnects_total", "risk") == 0
    )
    assert shared("bnml_nats_errors_total", "signal", kind="slow_consumer") == 1
    # the old names, kept for one release, say the same
    assert got[("bnml_risk_up", ())] == 1 and got[("bnml_signal_nats_reconnects_total", ())] == 3
    assert got[("bnml_risk_dlq_messages_total", (("subject", "signal.BTCUSDT"),))] == 2
    # only the shared things get a shared name
    assert not any(name == "bnml_equity_usdt" for name, _ in got)
    assert {
        n.removeprefix("bnml_")
        for n, _ in got
        if not n.startswith(("bnml_risk_", "bnml_signal_")) and not n.endswith("_created")
    } == set(SHARED)


def test_the_shared_names_follow_later_changes_and_each_registry_exports_them_once():
    a, b = CollectorRegistry(), CollectorRegistry()
    ma, mb = ServiceMetrics("risk", registry=a), ServiceMetrics("risk", registry=b)
    ma.up.set(0)
    assert scrape(a)[("bnml_up", (("service", "risk"),))] == 0  # read at scrape time, never a stale copy
    assert scrape(b)[("bnml_up", (("service", "risk"),))] == 1
    text = generate_latest(a).decode()
    assert text.count("# TYPE bnml_up gauge") == 1
    assert mb.up is not ma.up


def prom_exprs() -> list[tuple[str, str]]:
    out = []
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        out += [
            (f"{path.name} / {p['title']}", t["expr"])
            for p in board["panels"]
            for t in p.get("targets", [])
            if "expr" in t
        ]
        out += [
            (f"{path.name} / variable {v['name']}", v["query"]["query"]) for v in board["templating"]["list"]
        ]
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
    return out + [(f"alerts.yml / {r['alert']}", r["expr"]) for g in rules for r in g["rules"]]


def test_dashboards_and_rules_read_the_shared_names_not_the_per_service_ones():
    old = re.compile(rf"\bbnml_({'|'.join(SERVICES)})_({'|'.join(SHARED)})\b")
    for where, expr in prom_exprs():
        assert not old.search(expr), f"{where}: read the shared name (with a service label): {expr}"
        assert "__name__" not in expr, f"{where}: a name regex over services; use the shared name: {expr}"
    used = {thing for _, expr in prom_exprs() for thing in SHARED if re.search(rf"\bbnml_{thing}\b", expr)}
    assert used >= {"nats_connected", "handler_errors_total", "dlq_messages_total", "nats_errors_total"}, used
