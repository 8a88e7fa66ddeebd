"""The benchmarks' messages per batch: read from the services' `/metrics` before and after a
run."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from dxtalent.stack import batch_totals_in, messages_per_batch


def _exposition(batches: dict[str, list[int]]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram(
        "dxtalent_consumer_batch_size", "Messages per batch.", ["consumer"], registry=registry
    )
    for consumer, sizes in batches.items():
        for size in sizes:
            histogram.labels(consumer).observe(size)
    return generate_latest(registry).decode()


def test_batch_totals_are_each_consumers_count_and_sum() -> None:
    text = _exposition({"enrollment": [10, 30], "reporting": [200]})
    assert batch_totals_in(text) == {"enrollment": (2.0, 40.0), "reporting": (1.0, 200.0)}


def test_messages_per_batch_is_the_mean_over_the_run_only() -> None:
    before = {"enrollment": (2.0, 40.0), "certification": (1.0, 5.0)}
    after = {"enrollment": (5.0, 100.0), "certification": (1.0, 5.0), "reporting": (2.0, 400.0)}
    # certification made no batch during the run: no figure rather than a division by zero
    assert messages_per_batch(before, after) == {"enrollment": 20.0, "reporting": 200.0}
