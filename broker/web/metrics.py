"""The broker's metrics, kept and rendered by prometheus-client.

One process (``broker serve``): each app keeps its metrics in a registry of
its own, so several apps in one process (the tests' replicas) never mix.

Several workers (``broker serve --workers N``, `broker.workers`): every worker
writes its values to files in a directory private to that run (prometheus-
client's multiprocess mode; the supervisor makes the directory, passes it to
each worker, and marks a worker dead when it exits), and whichever worker
answers ``/metrics`` reads them all: counters and histograms are summed over
every worker that ever ran in this run (an exited worker's counts stay, so a
counter never goes back). Gauges say how they combine (``multiprocess_mode``):

- ``broker_guacd_live_connections``, ``broker_asyncio_tasks``: ``livesum``,
  the host's total over the live workers;
- ``broker_guacd_healthy``, ``broker_event_bus_listening``: ``livemin``, 1
  only while every live worker sees the guacd healthy / hears the other
  replicas (one worker that does not is the thing to alert on; ``max`` would
  hide it). An exited worker's gauges go with it (``mark_process_dead``).

Values read from the database at scrape time (``broker_sessions``,
``broker_sessions_ended_total``) and ``broker_up`` are not kept in any file:
the answering worker adds them once (`Snapshot`), so they are never reported
N times over.

State kept elsewhere in a process (the guacd pool's health and counts, the
event bus, CPU time, asyncio tasks) is copied into the metrics by `sample`:
at each scrape for the answering process, and every `SAMPLE_SECONDS` in each
worker, so the other workers' share is at most that old.

CPU: ``process_cpu_seconds_total`` is the processes' own user+system time
(every worker's, summed). The relay does not time itself: its work is spread
over the event loop (framing, aiohttp's frame writes, the sockets), and
timing parts of its loop showed about a sixteenth of the real cost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from broker.core.events import BusState
from protocols.guacd_pool import EndpointHealth

if TYPE_CHECKING:
    from broker.web.relay import RelayStats

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# How often each worker copies its process state into the shared files.
SAMPLE_SECONDS = 5.0

CONTENT_TYPE = "text/plain"

# No ``*_created`` series: nothing here needs them and they double every counter.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Snapshot(Collector):
    """Metric families computed for one scrape (from the database, say)."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class _Kept(Collector):
    """This process's own registry, as one collector of a scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class Metrics:
    """The broker's own metrics. ``multiprocess_dir``: the directory the
    workers of this run share (the process must have been started with
    ``PROMETHEUS_MULTIPROC_DIR`` naming it, `broker.workers` does that)."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "broker_http_request_duration_seconds",
            "HTTP request latency by route.",
            ("method", "route", "status"),
            buckets=DEFAULT_BUCKETS,
            registry=r,
        )
        self.launches = Counter(
            "broker_launches", "Workspace launches by outcome.", ("outcome",), registry=r
        )
        self.relay = Counter(
            "broker_relay", "Relay totals of closed viewer streams.", ("what",), registry=r
        )
        self.edge_refusals = Counter(
            "broker_edge_refusals",
            "Requests refused by the edge guard (rate limits, WebSocket origin), by reason.",
            ("reason",),
            registry=r,
        )
        self.guacd_healthy = Gauge(
            "broker_guacd_healthy",
            "1 while the guacd passed its last health check.",
            ("endpoint",),
            registry=r,
            multiprocess_mode="livemin",
        )
        self.guacd_live = Gauge(
            "broker_guacd_live_connections",
            "Open connections to the guacd.",
            ("endpoint",),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.guacd_failures = Counter(
            "broker_guacd_failures",
            "Failed health checks and connections before ready, per guacd.",
            ("endpoint",),
            registry=r,
        )
        # Made at the first sample with an event bus: without one (SQLite) they
        # are not shown, rather than shown as 0 (which would read "not hearing").
        self._bus: tuple[Gauge, Counter] | None = None
        self.tasks = Gauge(
            "broker_asyncio_tasks",
            "asyncio tasks alive in this process.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cpu = Counter(
            "process_cpu_seconds", "User and system CPU time of this process.", registry=r
        )
        # What was last copied from state kept elsewhere (counters move by the difference).
        self._cpu_seen = 0.0
        self._failures_seen: dict[str, float] = {}
        self._disconnects_seen = 0.0
        self.sample()

    def relayed(self, stats: RelayStats) -> None:
        relay = self.relay
        relay.labels(what="bytes_to_browser").inc(stats.bytes_to_browser)
        relay.labels(what="frames_to_browser").inc(stats.frames_to_browser)
        relay.labels(what="messages_from_browser").inc(stats.messages_from_browser)
        relay.labels(what="streams").inc()
        if stats.join_repairs:
            relay.labels(what="guacd_join_repairs").inc(stats.join_repairs)

    def sample(self, guacd: Sequence[EndpointHealth] = (), bus: BusState | None = None) -> None:
        """Copy this process's state kept elsewhere into the metrics."""
        cpu = time.process_time()
        self.cpu.inc(max(0.0, cpu - self._cpu_seen))
        self._cpu_seen = cpu
        for s in guacd:
            endpoint = str(s.endpoint)
            self.guacd_healthy.labels(endpoint=endpoint).set(float(bool(s.healthy)))
            self.guacd_live.labels(endpoint=endpoint).set(s.live)
            seen = self._failures_seen.get(endpoint, 0.0)
            self.guacd_failures.labels(endpoint=endpoint).inc(max(0.0, s.failures - seen))
            self._failures_seen[endpoint] = max(seen, float(s.failures))
        if bus is not None:
            listening, disconnects = self._bus or self._bus_metrics()
            listening.set(float(bus.listening))
            disconnects.inc(max(0.0, bus.disconnects - self._disconnects_seen))
            self._disconnects_seen = max(self._disconnects_seen, float(bus.disconnects))
        try:
            self.tasks.set(len(asyncio.all_tasks()))
        except RuntimeError:  # no running loop (made outside the app)
            self.tasks.set(0)

    def _bus_metrics(self) -> tuple[Gauge, Counter]:
        self._bus = (
            Gauge(
                "broker_event_bus_listening",
                "1 while this replica hears sessions ended on other replicas (PostgreSQL LISTEN).",
                registry=self.registry,
                multiprocess_mode="livemin",
            ),
            Counter(
                "broker_event_bus_disconnects",
                "Listening connections for other replicas' events lost since start.",
                registry=self.registry,
            ),
        )
        return self._bus

    def render(self, snapshot: Sequence[Metric] = ()) -> str:
        """The exposition text: every worker's metrics (or this process's),
        then ``snapshot``, which only this scrape reports."""
        scrape = CollectorRegistry(auto_describe=False)
        if self.multiprocess_dir is not None:
            MultiProcessCollector(scrape, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            scrape.register(_Kept(self.registry))
        scrape.register(Snapshot(snapshot))
        return generate_latest(scrape).decode("utf-8")
