"""Prometheus helpers: names follow `bnml_<service>_<thing>_<unit>`; every service serves `/metrics`.

What every service measures alike (SHARED) is also exported in the Prometheus form, one name with a `service`
label: `bnml_up{service="risk"}` beside `bnml_risk_up`. The per-service names stay for one release (docs/deploy.md,
"Metric names"); dashboards and rules read the shared ones.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric

# Latency buckets (seconds) fine enough for sub-millisecond hops.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Where a live order can rest on the book (verdict -> fill, tick -> order) the wait is seconds to minutes: the same
# fine buckets, then up to 300 s, so a resting limit order lands in a bucket instead of +Inf.
RESTING_ORDER_BUCKETS = LATENCY_BUCKETS + (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


# Things every service measures the same way (libs/common/metrics.py and libs/common/bus.py declare them).
SHARED = (
    "up",
    "nats_connected",
    "nats_reconnects_total",
    "nats_errors_total",
    "dlq_messages_total",
    "handler_errors_total",
)


class SharedNames:
    """A collector exporting each SHARED metric of the services in one registry under `bnml_<thing>` with a
    `service` label. It reads the per-service metrics at scrape time, so the two names can never disagree."""

    def __init__(self) -> None:
        self.services: list[ServiceMetrics] = []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for sm in self.services:
            prefix = f"bnml_{sm.service}_"
            for thing in SHARED:
                own = sm._counters.get(thing) or sm._gauges.get(thing)
                if own is None:
                    continue
                for metric in own.collect():
                    name = "bnml_" + metric.name[len(prefix) :]
                    family = families.setdefault(name, Metric(name, metric.documentation, metric.type))
                    for sample in metric.samples:
                        family.add_sample(
                            "bnml_" + sample.name[len(prefix) :],
                            {"service": sm.service, **sample.labels},
                            sample.value,
                            sample.timestamp,
                        )
        yield from families.values()


_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, SharedNames] = weakref.WeakKeyDictionary()


def _shared_names(registry: CollectorRegistry) -> SharedNames:
    """The one SharedNames of `registry` (registered on first use: a family may appear once per scrape)."""
    if registry not in _SHARED:
        _SHARED[registry] = SharedNames()
        registry.register(_SHARED[registry])
    return _SHARED[registry]


class ServiceMetrics:
    """The metrics of one service, plus plain totals reported in heartbeats (for `bnml status`)."""

    RESTING_ORDER_BUCKETS = (
        RESTING_ORDER_BUCKETS  # for shells: `m.histogram(..., buckets=m.RESTING_ORDER_BUCKETS)`
    )

    def __init__(self, service: str, registry: CollectorRegistry = REGISTRY):
        self.service = service
        self.registry = registry
        self.totals: dict[str, int] = defaultdict(int)
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._histograms: dict[str, Histogram] = {}
        _shared_names(registry).services.append(self)
        self.up = self.gauge("up", "1 while the service runs")
        self.dlq = self.counter(
            "dlq_messages_total", "Invalid messages sent to the dead-letter queue", ["subject"]
        )
        self.handler_errors = self.counter(
            "handler_errors_total", "Exceptions raised by message handlers", ["subject"]
        )
        self.up.set(1)

    def name(self, thing: str) -> str:
        return f"bnml_{self.service}_{thing}"

    def counter(self, thing: str, doc: str, labels: list[str] | None = None) -> Counter:
        if thing not in self._counters:
            self._counters[thing] = Counter(self.name(thing), doc, labels or [], registry=self.registry)
        return self._counters[thing]

    def gauge(self, thing: str, doc: str, labels: list[str] | None = None) -> Gauge:
        if thing not in self._gauges:
            self._gauges[thing] = Gauge(self.name(thing), doc, labels or [], registry=self.registry)
        return self._gauges[thing]

    def histogram(
        self,
        thing: str,
        doc: str,
        labels: list[str] | None = None,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        if thing not in self._histograms:
            self._histograms[thing] = Histogram(
                self.name(thing), doc, labels or [], buckets=buckets, registry=self.registry
            )
        return self._histograms[thing]

    def count(self, total: str, n: int = 1) -> None:
        """Add to a heartbeat total (e.g. `ticks`, `signals`, `dlq`)."""
        self.totals[total] += n

    def serve(self, port: int) -> int:
        """Serve `/metrics` on `port` (0 = any free port); returns the port bound."""
        server, _thread = start_http_server(port, registry=self.registry)
        return server.server_port
