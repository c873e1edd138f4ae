"""Reading a ``/metrics`` answer as Prometheus does (prometheus-client's own
parser), so tests compare numbers, not how a number is spelled."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample named ``name`` (e.g. ``broker_launches_total``), by its labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly ``labels``; None when there is none."""
    return samples(text, name).get(tuple(sorted(labels.items())))
