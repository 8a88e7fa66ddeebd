"""`applier.observe_many` is `observe` repeated: the same buckets and count, the same sum
(up to rounding). Fails when prometheus_client's histogram changes underneath it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from dxtalent_infra.applier import observe_many

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=3, allow_nan=False),
            st.integers(min_value=1, max_value=600),
        ),
        max_size=5,
    )
)
def test_observing_many_at_once_is_observing_each(batches: list[tuple[float, int]]) -> None:
    one, many = (
        Histogram("h", "test", ["consumer"], buckets=BUCKETS, registry=CollectorRegistry())
        for _ in range(2)
    )
    for value, times in batches:
        for _ in range(times):
            one.labels("c").observe(value)
        observe_many(many.labels("c"), value, times)
    expected, got = _samples(one), _samples(many)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert {k: v for k, v in got.items() if k[0] != "h_sum"} == {
        k: v for k, v in expected.items() if k[0] != "h_sum"
    }


def test_anything_else_is_observed_time_by_time() -> None:
    seen: list[float] = []

    class Plain:
        def observe(self, value: float) -> None:
            seen.append(value)

    observe_many(Plain(), 0.5, 3)
    assert seen == [0.5, 0.5, 0.5]
