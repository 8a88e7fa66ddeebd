"""How long a service's consumers leave between their batches' starts: the service's default
in its spec, DXT_BATCH_INTERVAL_MS over it, and the bounds of both (decision 0290)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dxtalent_infra.consumer import MAX_BATCH_INTERVAL_S, ConsumerOptions
from dxtalent_infra.runtime import CRITICAL_PATH_BATCH_INTERVAL_S, batch_interval
from dxtalent_infra.settings import Settings
from tests.unit.contracts.test_subjects_documented import service_specs


def intervals(settings: Settings) -> dict[str, float]:
    return {c.durable: batch_interval(settings, c) for s in service_specs() for c in s.consumers}


def test_every_consumer_spaces_its_batches_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, each consumer takes its service's default: the read model waits longest
    between batches; enrollment and certification (CourseCompleted to LevelCertified) wait
    the critical path's short interval (decision 0345)."""
    monkeypatch.delenv("DXT_BATCH_INTERVAL_MS", raising=False)
    assert intervals(Settings()) == {
        "reporting": 0.2,
        "enrollment": CRITICAL_PATH_BATCH_INTERVAL_S,
        "certification": CRITICAL_PATH_BATCH_INTERVAL_S,
    }


@pytest.mark.parametrize(("value", "seconds"), [("0", 0.0), ("250", 0.25), ("", 0.2)])
def test_the_variable_overrides_the_default(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    """DXT_BATCH_INTERVAL_MS is milliseconds; empty (compose's `${...:-}`) is unset."""
    monkeypatch.setenv("DXT_BATCH_INTERVAL_MS", value)
    assert intervals(Settings())["reporting"] == seconds


@pytest.mark.parametrize("value", ["-1", "5001", "0.5", "soon"])
def test_an_interval_out_of_bounds_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DXT_BATCH_INTERVAL_MS", value)
    with pytest.raises(ValidationError, match="batch_interval_ms"):
        Settings()


def test_the_settings_bound_is_the_consumers() -> None:
    """The largest interval Settings accepts is the largest a consumer takes."""
    assert Settings(batch_interval_ms=5000).batch_interval_ms == MAX_BATCH_INTERVAL_S * 1000
    ConsumerOptions(min_batch_interval=MAX_BATCH_INTERVAL_S)
    for wrong in (-0.001, MAX_BATCH_INTERVAL_S + 0.001):
        with pytest.raises(ValueError, match="min_batch_interval"):
            ConsumerOptions(min_batch_interval=wrong)
