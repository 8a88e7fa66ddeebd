"""One employee's facts, certification state and sent ledger as the JSON of the `employees`
read model.

`facts_to_json` / `facts_from_json`, `state_to_json` / `state_from_json` and `ledger_to_json` /
`ledger_from_json` round-trip. Every
document carries its format number `v`, so a later format can upcast older rows on read.
Facts are written sorted by id, skills and levels by key, so equal values read alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

from pydantic_core import from_json, to_json

from dxtalent_certification.domain.corrections import SentEvent, SentLedger
from dxtalent_certification.domain.facts import (
    Completion,
    Departure,
    EmployeeFacts,
    EmployeeRecord,
    Nomination,
    Void,
)
from dxtalent_certification.domain.state import CertificationState, CertifiedLevel, HeldSkill
from dxtalent_contracts.events import Evidence

FORMAT = 1


# --- facts ------------------------------------------------------------------------------------


def facts_to_json(facts: EmployeeFacts) -> str:
    """One employee's facts as a JSON document."""
    return _dumps(_facts_doc(facts))


def _facts_doc(facts: EmployeeFacts) -> dict[str, Any]:
    """The document `facts_to_json` writes, before encoding."""
    return {
        "v": FORMAT,
        "employee_id": facts.employee_id,
        "records": [_record_doc(r) for r in _by_id(facts.records)],
        "nominations": [_nomination_doc(n) for n in _by_id(facts.nominations)],
        "completions": [_completion_doc(c) for c in _by_id(facts.completions)],
        "voids": [_void_doc(v) for v in _by_id(facts.voids)],
        "departures": [_departure_doc(x) for x in _by_id(facts.departures)],
    }


def facts_to_json_after(facts: EmployeeFacts, before: EmployeeFacts, doc: Mapping[str, Any]) -> str:
    """`facts_to_json(facts)` as a JSON value, for `facts` that hold every fact of `before`,
    whose document is `doc` (as decoded by `facts_and_doc_from_json`): the facts `before`
    held are kept as `doc` has them and only the added ones are encoded (a row's write adds a
    fact or two to the many it holds). Keys within an object may come in another order
    (`jsonb` keeps its own); facts sharing an id, as in `facts_to_json`, in either order.
    Anything else (facts gone, `doc` not `before`'s) is encoded whole."""
    if facts.employee_id != before.employee_id or doc.get("employee_id") != before.employee_id:
        return facts_to_json(facts)
    out = dict(doc)
    kinds: tuple[tuple[str, frozenset[Any], frozenset[Any], Callable[[Any], dict[str, Any]]], ...]
    kinds = (
        ("records", facts.records, before.records, _record_doc),
        ("nominations", facts.nominations, before.nominations, _nomination_doc),
        ("completions", facts.completions, before.completions, _completion_doc),
        ("voids", facts.voids, before.voids, _void_doc),
        ("departures", facts.departures, before.departures, _departure_doc),
    )
    for name, now, was, encode in kinds:
        held = doc.get(name)
        if held is None or len(held) != len(was):
            return facts_to_json(facts)
        if now is was:
            continue
        added = now - was
        if len(now) != len(was) + len(added):
            return facts_to_json(facts)
        out[name] = sorted([*held, *map(encode, added)], key=_BY_ID)
    return _dumps(out)


def facts_from_json(text: str) -> EmployeeFacts:
    """The inverse of `facts_to_json`."""
    return _facts_of(_load(text))


def facts_and_doc_from_json(text: str) -> tuple[EmployeeFacts, dict[str, Any]]:
    """`facts_from_json`, and the decoded document (for `facts_to_json_after`)."""
    doc = _load(text)
    return _facts_of(doc), doc


def _facts_of(doc: Mapping[str, Any]) -> EmployeeFacts:
    e: str = doc["employee_id"]
    day = dt.date.fromisoformat
    records, nominations = doc["records"], doc["nominations"]
    completions, voids, departures = doc["completions"], doc["voids"], doc["departures"]
    # this runs for every row a batch locks: positional arguments in field order, sets built
    # from lists (half the time of generators here), one shared empty set for a kind without
    # facts
    return EmployeeFacts(
        e,
        frozenset(
            [
                EmployeeRecord(
                    r["id"],
                    e,
                    r["department_code"],
                    frozenset(r["categories"]),
                    frozenset(r["duty_skills"]),
                    day(r["effective_date"]),
                    r["it_qualified_hire"],
                )
                for r in records
            ]
        )
        if records
        else _NONE,
        frozenset(
            [Nomination(n["id"], e, n["fiscal_year"], n["department_code"]) for n in nominations]
        )
        if nominations
        else _NONE,
        frozenset(
            [Completion(c["id"], e, c["course_id"], day(c["completed_on"])) for c in completions]
        )
        if completions
        else _NONE,
        frozenset([Void(v["id"], e, v["course_id"], v["voided"], v["reason"]) for v in voids])
        if voids
        else _NONE,
        frozenset([Departure(x["id"], e, day(x["left_on"])) for x in departures])
        if departures
        else _NONE,
    )


_NONE: frozenset[Any] = frozenset()


def _record_doc(r: EmployeeRecord) -> dict[str, Any]:
    return {
        "id": r.fact_id,
        "department_code": r.department_code,
        "categories": sorted(r.categories),
        "duty_skills": sorted(r.duty_skills),
        "effective_date": r.effective_date.isoformat(),
        "it_qualified_hire": r.it_qualified_hire,
    }


def _nomination_doc(n: Nomination) -> dict[str, Any]:
    return {"id": n.fact_id, "fiscal_year": n.fiscal_year, "department_code": n.department_code}


def _completion_doc(c: Completion) -> dict[str, Any]:
    return {"id": c.fact_id, "course_id": c.course_id, "completed_on": c.completed_on.isoformat()}


def _void_doc(v: Void) -> dict[str, Any]:
    return {
        "id": v.fact_id,
        "course_id": v.course_id,
        "voided": v.voided_fact_id,
        "reason": v.reason,
    }


def _departure_doc(x: Departure) -> dict[str, Any]:
    return {"id": x.fact_id, "left_on": x.left_on.isoformat()}


_BY_ID = itemgetter("id")


# --- state ------------------------------------------------------------------------------------


def state_to_json(state: CertificationState) -> str:
    """One employee's skills and levels as a JSON document."""
    doc = {
        "v": FORMAT,
        "employee_id": state.employee_id,
        "skills": [
            {
                "skill": s.skill,
                "course_id": s.course_id,
                "acquired_on": s.acquired_on.isoformat(),
                "evidence": s.evidence_fact_id,
            }
            for s in state.skills.values()
        ],
        "levels": [
            {
                "level": lv.level,
                "certified_on": lv.certified_on.isoformat(),
                "fiscal_year": lv.fiscal_year,
                "department_code": lv.department_code,
                "via_equivalence": lv.via_equivalence,
                "evidence": [
                    {
                        "skill": e.skill,
                        "course_id": e.course_id,
                        "completed_on": e.completed_on.isoformat(),
                        "event_id": e.event_id,
                    }
                    for e in lv.evidence
                ],
            }
            for lv in state.levels.values()
        ],
    }
    return _dumps(doc)


def state_from_json(text: str) -> CertificationState:
    """The inverse of `state_to_json`."""
    doc = _load(text)
    day = dt.date.fromisoformat
    skills = {
        s["skill"]: HeldSkill(s["skill"], s["course_id"], day(s["acquired_on"]), s["evidence"])
        for s in doc["skills"]
    }
    levels = {
        lv["level"]: CertifiedLevel(
            lv["level"],
            day(lv["certified_on"]),
            lv["fiscal_year"],
            lv["department_code"],
            tuple(
                [
                    Evidence(
                        skill=e["skill"],
                        course_id=e["course_id"],
                        completed_on=day(e["completed_on"]),
                        event_id=e["event_id"],
                    )
                    for e in lv["evidence"]
                ]
            ),
            lv["via_equivalence"],
        )
        for lv in doc["levels"]
    }
    return CertificationState(doc["employee_id"], skills, levels)


# --- sent ledger ------------------------------------------------------------------------------


def ledger_to_json(ledger: SentLedger) -> str:
    """The last event sent per level and skill, as a JSON document."""
    doc = {
        "v": FORMAT,
        "sent": {k: {"id": e.event_id, "data": _dict(e.data)} for k, e in ledger.entries.items()},
    }
    return _dumps(doc)


def ledger_from_json(text: str) -> SentLedger:
    """The inverse of `ledger_to_json`."""
    doc = _load(text)
    return SentLedger({k: SentEvent(e["id"], e["data"]) for k, e in doc["sent"].items()})


# --- helpers ----------------------------------------------------------------------------------


def _by_id(facts: frozenset[Any]) -> list[Any]:
    return sorted(facts, key=lambda f: f.fact_id)


def _dict(data: Mapping[str, Any]) -> dict[str, Any]:
    # the data of a sent event is a dict (decoded, or `mark`'s), never modified: no copy
    return data if type(data) is dict else dict(data)


def _dumps(doc: dict[str, Any]) -> str:
    # pydantic-core's encoder: the very text of json.dumps(doc, ensure_ascii=False,
    # separators=(",", ":")) for these documents, in about half the time
    return to_json(doc).decode()


def _load(text: str) -> dict[str, Any]:
    # pydantic-core's parser: the same values as json.loads for these documents (objects,
    # arrays, strings, integers, booleans), in about half the time
    doc: dict[str, Any] = from_json(text)
    if doc.get("v") != FORMAT:
        raise ValueError(f"unknown read-model format {doc.get('v')!r}; this code reads {FORMAT}")
    return doc
