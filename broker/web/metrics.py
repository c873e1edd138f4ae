"""Prometheus text-format metrics without a dependency: counters and histograms
with labels, rendered on demand. What comes from the database (active
sessions, the ended-session totals every replica shares) is added by the
``/metrics`` handler at scrape time.

CPU: ``process_cpu_seconds_total`` is the process's own user+system time, read
at scrape time. The relay does not time itself: its work is spread over the
event loop (framing, aiohttp's frame writes, the sockets), and timing parts of
its loop showed about a sixteenth of the real cost."""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.web.relay import RelayStats

Labels = tuple[tuple[str, str], ...]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _fmt_labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_fmt_labels(labels)} {value:g}"


class Histogram:
    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        self.name = name
        self.help = help_text
        self._bounds = tuple(buckets)
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts, sums = self._series.setdefault(key, ([0] * (len(self._bounds) + 1), [0.0]))
        counts[bisect.bisect_left(self._bounds, value)] += 1
        sums[0] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, (counts, sums) in sorted(self._series.items()):
            running = 0
            for bound, count in zip(self._bounds, counts, strict=False):
                running += count
                yield f"{self.name}_bucket{_fmt_labels(labels, (('le', f'{bound:g}'),))} {running}"
            running += counts[-1]
            yield f"{self.name}_bucket{_fmt_labels(labels, (('le', '+Inf'),))} {running}"
            yield f"{self.name}_sum{_fmt_labels(labels)} {sums[0]:g}"
            yield f"{self.name}_count{_fmt_labels(labels)} {running}"


def gauge_lines(name: str, help_text: str, values: dict[Labels, float]) -> Iterable[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} gauge"
    for labels, value in sorted(values.items()):
        yield f"{name}{_fmt_labels(labels)} {value:g}"


def counter_lines(name: str, help_text: str, values: dict[Labels, float]) -> Iterable[str]:
    """A counter kept elsewhere (e.g. by the guacd pool), rendered like `Counter`."""
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} counter"
    for labels, value in sorted(values.items()):
        yield f"{name}{_fmt_labels(labels)} {value:g}"


class Metrics:
    """The broker's own metrics."""

    def __init__(self) -> None:
        self.requests = Histogram(
            "broker_http_request_duration_seconds", "HTTP request latency by route."
        )
        self.launches = Counter("broker_launches_total", "Workspace launches by outcome.")
        self.relay = Counter("broker_relay_total", "Relay totals of closed viewer streams.")
        self.edge_refusals = Counter(
            "broker_edge_refusals_total",
            "Requests refused by the edge guard (rate limits, WebSocket origin), by reason.",
        )

    def relayed(self, stats: RelayStats) -> None:
        self.relay.inc(stats.bytes_to_browser, what="bytes_to_browser")
        self.relay.inc(stats.frames_to_browser, what="frames_to_browser")
        self.relay.inc(stats.messages_from_browser, what="messages_from_browser")
        self.relay.inc(1, what="streams")
        if stats.join_repairs:
            self.relay.inc(stats.join_repairs, what="guacd_join_repairs")

    def render(self) -> Iterable[str]:
        for metric in (
            self.requests,
            self.launches,
            self.relay,
            self.edge_refusals,
        ):
            yield from metric.render()
        yield "# HELP process_cpu_seconds_total User and system CPU time of this process."
        yield "# TYPE process_cpu_seconds_total counter"
        yield f"process_cpu_seconds_total {time.process_time():g}"
