"""xAPI statements written by hand after the specification's examples (xAPI 1.0.3, Data,
"Example Statements" and "Voiding"), with the Hirakata LMS's activity ids and an employee id
as the actor's account name."""

from __future__ import annotations

import uuid
from typing import Any

LMS = "https://lms.city.hirakata.example"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
PASSED = "http://adlnet.gov/expapi/verbs/passed"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"


def learner(employee_id: str) -> dict[str, Any]:
    return {
        "objectType": "Agent",
        "name": "枚方 花子",
        "account": {"homePage": LMS, "name": employee_id},
    }


def course_statement(
    employee_id: str,
    course: str = "DX-101",
    *,
    verb: str = COMPLETED,
    timestamp: str = "2025-06-11T16:30:00Z",
    statement_id: str | None = None,
) -> dict[str, Any]:
    """A learner completed (or passed, ...) a course activity of the LMS."""
    statement: dict[str, Any] = {
        "actor": learner(employee_id),
        "verb": {"id": verb, "display": {"en-US": verb.rsplit("/", 1)[1]}},
        "object": {
            "id": f"{LMS}/courses/{course}",
            "objectType": "Activity",
            "definition": {
                "name": {"ja-JP": course, "en-US": course},
                "type": "http://adlnet.gov/expapi/activities/course",
            },
        },
        "result": {"completion": True, "success": True, "score": {"scaled": 0.95}},
        "context": {"platform": "Hirakata LMS", "language": "ja-JP"},
        "timestamp": timestamp,
    }
    if statement_id is not None:
        statement["id"] = statement_id
    return statement


def voiding(voided_id: str, statement_id: str | None = None) -> dict[str, Any]:
    """The specification's voiding example: an administrator voids a statement by its id."""
    statement: dict[str, Any] = {
        "actor": {
            "objectType": "Agent",
            "name": "Example Admin",
            "mbox": "mailto:admin@example.adlnet.gov",
        },
        "verb": {"id": VOIDED, "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": voided_id},
    }
    if statement_id is not None:
        statement["id"] = statement_id
    return statement


def new_id() -> str:
    return str(uuid.uuid4())
