"""xAPI statements, pure: which are well formed, when two are the same, and the facts they mean.

- A statement whose verb is *completed* or *passed*, whose object is an activity the catalog
  maps to a course (`Course.xapi_activities`) and whose actor has an account, means a
  `CourseCompleted`: the employee is the account's name, the day is the Japan date of the
  statement's `timestamp` (else of when it was stored).
- A statement whose verb is *voided* and whose object is a `StatementRef` means a
  `CompletionVoided` of the completion that statement meant, whenever both are known, in
  whichever order they arrived.
- Fact ids are derived from statement ids alone (`fact_id`), so a void names the completion it
  cancels without having seen it, and a statement sent again is the same fact.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import japan_date
from dxtalent_contracts.inbound import CompletionVoidedEvent, CourseCompletedEvent
from dxtalent_contracts.registry import build_event
from dxtalent_contracts.types import ID_PATTERN
from dxtalent_enrollment.xapi_model import Statement

SOURCE = "urn:dxtalent:xapi"
COMPLETED = "http://adlnet.gov/expapi/verbs/completed"
PASSED = "http://adlnet.gov/expapi/verbs/passed"
VOIDED = "http://adlnet.gov/expapi/verbs/voided"
#: Namespace of the fact ids derived from statement ids.
XAPI_NAMESPACE = uuid.UUID("0d4b5f1e-8c3a-4e57-9a61-3b2f7c9e4d10")


def fact_id(statement_id: str) -> str:
    """The id of the fact a statement means: the same statement id, the same fact id."""
    return str(uuid.uuid5(XAPI_NAMESPACE, statement_id.lower()))


def comparable(statement: dict[str, Any]) -> str:
    """What must be equal for two statements with one id to be the same (xAPI's statement
    comparison): not what the LRS sets (`stored`, `authority`, `version`), the verb's
    `display`, the activity's `definition`, nor how the timestamp is written."""
    doc = {k: v for k, v in statement.items() if k not in ("stored", "authority", "version")}
    doc["verb"] = {k: v for k, v in doc.get("verb", {}).items() if k != "display"}
    doc["object"] = {k: v for k, v in doc.get("object", {}).items() if k != "definition"}
    if isinstance(doc.get("timestamp"), str):
        moment = dt.datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))
        doc["timestamp"] = moment.astimezone(dt.UTC).isoformat()
    doc["id"] = str(doc.get("id", "")).lower()
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Received:
    """A stored statement: its id, the statement, and when the service stored it."""

    id: str
    statement: Statement
    stored: dt.datetime

    @property
    def voids(self) -> str | None:
        """The id of the statement this one voids, when it is a voiding statement."""
        s = self.statement
        if s.verb.id == VOIDED and s.object_.objectType == "StatementRef":
            return (s.object_.id or "").lower()
        return None


@dataclass(frozen=True)
class Completion:
    employee_id: str
    course_id: str
    completed_on: dt.date


def completion(catalog: Catalog, received: Received) -> Completion | str:
    """The completion a statement means, or why it means none."""
    s = received.statement
    if s.verb.id not in (COMPLETED, PASSED):
        return f"verb {s.verb.id!r} is neither completed nor passed"
    if s.object_.objectType != "Activity":
        return f"the object is a {s.object_.objectType}, not an activity"
    course = catalog.course_by_activity.get(s.object_.id or "")
    if course is None:
        return f"activity {s.object_.id!r} is no course of catalog {catalog.policy_version}"
    name = s.actor.account.name if s.actor.account else None
    if name is None or not re.match(ID_PATTERN, name):
        return f"the actor has no account whose name is an employee id (got {name!r})"
    moment = s.timestamp or received.stored
    return Completion(name, course.id, japan_date(moment))


def completed_event(catalog: Catalog, received: Received) -> CourseCompletedEvent | None:
    """The `CourseCompleted` fact of a statement, if it means one."""
    done = completion(catalog, received)
    if isinstance(done, str):
        return None
    return build_event(
        CourseCompletedEvent,
        event_id=fact_id(received.id),
        source=SOURCE,
        subject=done.employee_id,
        time=received.statement.timestamp or received.stored,
        data={
            "employee_id": done.employee_id,
            "course_id": done.course_id,
            "completed_on": done.completed_on,
        },
    )


def voided_event(
    catalog: Catalog, voiding: Received, voided: Received
) -> CompletionVoidedEvent | None:
    """The `CompletionVoided` of `voided`'s completion by `voiding`, if it meant one."""
    done = completion(catalog, voided)
    if isinstance(done, str) or voided.voids is not None:
        return None
    return build_event(
        CompletionVoidedEvent,
        event_id=fact_id(voiding.id),
        source=SOURCE,
        subject=done.employee_id,
        time=voiding.statement.timestamp or voiding.stored,
        data={
            "employee_id": done.employee_id,
            "course_id": done.course_id,
            "voided_event_id": fact_id(voided.id),
            "reason": f"xAPI statement {voided.id} voided by statement {voiding.id}",
        },
    )


def meaning(catalog: Catalog, received: Received, known: dict[str, Received]) -> tuple[str, str]:
    """What a statement meant to the service, for its log line and metric: (outcome, why)."""
    target_id = received.voids
    if target_id is None:
        done = completion(catalog, received)
        return ("unused", done) if isinstance(done, str) else ("completion", "")
    target = known.get(target_id)
    if target is None:
        return "void_pending", f"statement {target_id} is not stored yet"
    if voided_event(catalog, received, target) is None:
        return "unused", f"statement {target_id} meant no completion"
    return "void", ""


def facts_for(
    catalog: Catalog,
    received: list[Received],
    known: dict[str, Received],
    voiders: list[Received],
) -> list[CourseCompletedEvent | CompletionVoidedEvent]:
    """Every fact the `received` statements mean, given the stored statements they void
    (`known`) and the stored statements that void them (`voiders`), each fact once."""
    facts: dict[str, CourseCompletedEvent | CompletionVoidedEvent] = {}
    for r in [*received, *voiders]:
        target = known.get(r.voids) if r.voids is not None else None
        event: CourseCompletedEvent | CompletionVoidedEvent | None = None
        if r.voids is None:
            event = completed_event(catalog, r)
        elif target is not None:
            event = voided_event(catalog, r, target)
        if event is not None:
            facts.setdefault(event.id, event)
    return list(facts.values())
