"""The cyclic garbage collector's generation-0 threshold of a service process: 50,000 by
default, DXT_GC_THRESHOLD over it, and the older generations' thresholds left as Python's
(decision 0340)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from dxtalent_infra.runtime import set_collector_threshold
from dxtalent_infra.settings import Settings


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    """The process's thresholds, restored after the test."""
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_fifty_thousand_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DXT_GC_THRESHOLD", raising=False)
    assert Settings().gc_threshold == 50_000


@pytest.mark.parametrize(("value", "threshold"), [("700", 700), ("200000", 200_000), ("", 50_000)])
def test_the_variable_overrides_the_default(
    monkeypatch: pytest.MonkeyPatch, value: str, threshold: int
) -> None:
    """700 is Python's own default; empty (compose's `${...:-}`) is unset."""
    monkeypatch.setenv("DXT_GC_THRESHOLD", value)
    assert Settings().gc_threshold == threshold


@pytest.mark.parametrize("value", ["0", "699", "1000001", "5e4", "many"])
def test_a_threshold_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """0 would turn automatic collection off; below Python's 700 or above a million is not a
    setting anyone means."""
    monkeypatch.setenv("DXT_GC_THRESHOLD", value)
    with pytest.raises(ValidationError, match="gc_threshold"):
        Settings()


def test_only_the_young_generation_threshold_changes(thresholds: tuple[int, int, int]) -> None:
    _, middle, full = thresholds
    set_collector_threshold(50_000)
    assert gc.get_threshold() == (50_000, middle, full)
    set_collector_threshold(700)
    assert gc.get_threshold() == (700, middle, full)


def test_objects_freed_by_reference_counting_leave_no_young_collection_behind(
    thresholds: tuple[int, int, int],
) -> None:
    """A burst of containers (a batch's) dropped before the threshold is reached is never
    walked: no young collection runs for it, where Python's 700 runs several."""
    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    def burst() -> None:
        batch = [{"fact": i} for i in range(20_000)]
        del batch

    gc.callbacks.append(count)
    try:
        for young, expect_none in ((50_000, True), (700, False)):
            gc.collect()  # the counts start at zero
            set_collector_threshold(young)
            runs.clear()
            burst()
            assert (runs == []) is expect_none, (young, runs)
    finally:
        gc.callbacks.remove(count)
