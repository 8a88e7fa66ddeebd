"""xAPI statements, pure: validation, statement comparison, and the facts they mean."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.inbound import CompletionVoidedEvent, CourseCompletedEvent
from dxtalent_enrollment.domain import check_inbound
from dxtalent_enrollment.xapi import (
    Received,
    comparable,
    fact_id,
    facts_for,
    meaning,
)
from dxtalent_enrollment.xapi_model import Statement
from tests.support.xapi_statements import (
    PASSED,
    course_statement,
    new_id,
    voiding,
)

CATALOG = load_catalog()
STORED = dt.datetime(2025, 7, 1, 3, 0, tzinfo=dt.UTC)


def _received(doc: dict[str, Any], statement_id: str | None = None) -> Received:
    return Received(statement_id or new_id(), Statement.model_validate(doc), STORED)


def test_a_completed_statement_means_a_completion_on_the_japan_date() -> None:
    """16:30 UTC on June 11 is June 12 in Japan; the fact id comes from the statement id."""
    r = _received(course_statement("E000123"))
    [fact] = facts_for(CATALOG, [r], {r.id: r}, [])
    assert isinstance(fact, CourseCompletedEvent)
    assert fact.id == fact_id(r.id)
    assert (fact.data.employee_id, fact.data.course_id) == ("E000123", "DX-101")
    assert fact.data.completed_on == dt.date(2025, 6, 12)
    assert not hasattr(check_inbound(CATALOG, fact.to_json_bytes()), "reason")


def test_without_a_timestamp_the_stored_time_dates_the_completion() -> None:
    """No timestamp: the day the service stored it (Japan date)."""
    doc = {k: v for k, v in course_statement("E1", verb=PASSED).items() if k != "timestamp"}
    [fact] = facts_for(CATALOG, [r := _received(doc)], {r.id: r}, [])
    assert isinstance(fact, CourseCompletedEvent)
    assert fact.data.completed_on == dt.date(2025, 7, 1)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (course_statement("E1", verb="http://adlnet.gov/expapi/verbs/attempted"), "neither"),
        (course_statement("E1", "NOT-A-COURSE"), "is no course of catalog"),
        (course_statement("山田"), "no account whose name is an employee id"),
    ],
)
def test_statements_that_mean_no_completion_say_why(doc: dict[str, Any], why: str) -> None:
    """Another verb, an unknown activity, an account name that is no employee id."""
    r = _received(doc)
    outcome, reason = meaning(CATALOG, r, {})
    assert outcome == "unused"
    assert why in reason
    assert facts_for(CATALOG, [r], {r.id: r}, []) == []


def test_a_void_names_the_completion_by_the_derived_id_in_either_order() -> None:
    """Void first (pending, no fact), then the statement: completion and void; or the void
    alone once the statement is known."""
    s = _received(course_statement("E1"))
    v = _received(voiding(s.id))
    assert meaning(CATALOG, v, {}) == ("void_pending", f"statement {s.id} is not stored yet")
    assert facts_for(CATALOG, [v], {}, []) == []
    both = facts_for(CATALOG, [s], {s.id: s}, [v])
    assert [f.type for f in both] == [
        "dxtalent.lms.CourseCompleted.v1",
        "dxtalent.lms.CompletionVoided.v1",
    ]
    [void] = facts_for(CATALOG, [v], {s.id: s}, [])
    assert isinstance(void, CompletionVoidedEvent)
    assert void.id == fact_id(v.id)
    assert void.data.voided_event_id == fact_id(s.id) == both[0].id


def test_statement_comparison_ignores_what_xapi_lets_differ() -> None:
    """Verb display, activity definition, stored/authority/version and how the timestamp is
    written do not make two statements differ; the result does."""
    doc = course_statement("E1", statement_id=new_id())
    same = doc | {
        "verb": doc["verb"] | {"display": {"ja-JP": "修了"}},
        "object": {"id": doc["object"]["id"], "objectType": "Activity"},
        "timestamp": "2025-06-12T01:30:00+09:00",
        "stored": "2025-07-01T00:00:00Z",
        "version": "1.0.0",
    }
    assert comparable(same) == comparable(doc)
    assert comparable(doc | {"result": {"success": False}}) != comparable(doc)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"actor": {"name": "no identifier"}}, "actor"),
        ({"verb": {"id": "completed"}}, "verb.id"),
        ({"object": {"objectType": "StatementRef", "id": "x"}}, "object"),
        ({"id": "not-a-uuid"}, "id"),
        ({"attachments": [{"usageType": "http://x", "contentType": "text/plain"}]}, "attachments"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_malformed_statements_are_refused(change: dict[str, Any], where: str) -> None:
    """No identifier, a verb that is no IRI, a StatementRef without a UUID, an id that is no
    UUID, raw attachments, an unknown property."""
    with pytest.raises(ValidationError) as info:
        Statement.model_validate(course_statement("E1") | change)
    assert where in str(info.value)
