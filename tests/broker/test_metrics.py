"""The broker's own metrics: what they claim is what happened."""

from __future__ import annotations

import time

from broker.web.metrics import Metrics
from broker.web.relay import RelayStats
from tests.scrape import value


def cpu_seconds(metrics: Metrics) -> float:
    metrics.sample()  # what a scrape does first
    seconds = value(metrics.render(), "process_cpu_seconds_total")
    assert seconds is not None
    return seconds


def test_cpu_seconds_are_the_process_real_cpu_time() -> None:
    metrics = Metrics()
    before = cpu_seconds(metrics)
    started = time.process_time()
    while time.process_time() - started < 0.2:  # burn CPU, as a busy relay would
        pass
    assert cpu_seconds(metrics) - before >= 0.2


def test_relay_totals_count_traffic_only() -> None:
    metrics = Metrics()
    metrics.relayed(RelayStats(bytes_to_browser=100, frames_to_browser=2, messages_from_browser=3))
    text = metrics.render()
    assert value(text, "broker_relay_total", what="bytes_to_browser") == 100
    assert value(text, "broker_relay_total", what="streams") == 1
    assert "cpu_seconds" not in text.replace("process_cpu_seconds_total", "")


def test_apps_in_one_process_keep_their_own_counts() -> None:
    a, b = Metrics(), Metrics()
    a.launches.labels(outcome="created").inc()
    assert value(a.render(), "broker_launches_total", outcome="created") == 1
    assert value(b.render(), "broker_launches_total", outcome="created") is None


def test_no_event_bus_no_event_bus_metrics() -> None:
    # SQLite has no bus between replicas: nothing to report, rather than a 0
    # that would read "not hearing the other replicas".
    metrics = Metrics()
    metrics.sample()
    assert "broker_event_bus" not in metrics.render()
