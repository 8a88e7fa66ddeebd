"""How the benchmark commands summarise their runs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dxtalent.figures import percentile, spread


def test_percentile_is_nearest_rank_of_the_sorted_values() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0
    assert percentile(values, 1.0) == 5.0


@given(st.lists(st.floats(-1e6, 1e6), min_size=1), st.floats(0, 1))
def test_a_percentile_is_one_of_the_values_and_grows_with_q(values: list[float], q: float) -> None:
    assert percentile(values, q) in values
    assert percentile(values, 0) <= percentile(values, q) <= percentile(values, 1)


def test_spread_prints_min_median_max_of_the_runs() -> None:
    assert spread([1_885.2, 1_896.0, 1_881.4], ",.0f") == "1,881 / 1,885 / 1,896"
