"""The broker's own metrics: what they claim is what happened."""

from __future__ import annotations

import time

from broker.web.metrics import Metrics
from broker.web.relay import RelayStats


def cpu_seconds(metrics: Metrics) -> float:
    (line,) = [x for x in metrics.render() if x.startswith("process_cpu_seconds_total ")]
    return float(line.split()[1])


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
    text = "\n".join(metrics.render())
    assert 'broker_relay_total{what="bytes_to_browser"} 100' in text
    assert 'broker_relay_total{what="streams"} 1' in text
    assert "cpu_seconds" not in text.replace("process_cpu_seconds_total", "")
