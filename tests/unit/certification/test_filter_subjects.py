"""The certification consumer filters on the subjects of the events its handler uses, and
only those (decision 0295)."""

from __future__ import annotations

import pytest

from dxtalent_certification import enrollment_facts
from dxtalent_certification.enrollment_facts import FACT_EVENTS, SUBJECTS, fact_of
from dxtalent_certification.service import SPEC
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import ENROLLMENT_EVENT_CLASSES
from dxtalent_contracts.registry import ALL_EVENT_CLASSES, type_name
from tests.unit.contracts.test_parsing import _example


@pytest.mark.parametrize("cls", ENROLLMENT_EVENT_CLASSES, ids=type_name)
def test_an_enrollment_event_is_read_exactly_when_it_records_a_fact(
    cls: type[CloudEvent],
) -> None:
    """An enrollment event whose subject the consumer filters on gives a fact; one it does
    not filter on gives none (so leaving it out loses nothing)."""
    records_a_fact = fact_of(_example(cls)) is not None  # type: ignore[arg-type]
    assert records_a_fact == (cls.nats_subject in SUBJECTS)
    assert records_a_fact == (cls in FACT_EVENTS)


def test_the_consumer_filters_on_the_fact_subjects_only() -> None:
    """The durable's filter is the list of fact subjects, each an enrollment event's own
    subject, none of another service's."""
    [consumer] = SPEC.consumers
    assert consumer.filter_subjects == enrollment_facts.SUBJECTS
    assert len(set(SUBJECTS)) == len(SUBJECTS) == len(FACT_EVENTS)
    assert set(SUBJECTS) < {c.nats_subject for c in ENROLLMENT_EVENT_CLASSES}
    others = set(ALL_EVENT_CLASSES) - set(ENROLLMENT_EVENT_CLASSES)
    assert not set(SUBJECTS) & {c.nats_subject for c in others}
