"""Readable facts for certification tests: `Given` collects one employee's facts, with ids."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TypeVar

from dxtalent_certification.domain.decide import DomainChange, decide
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import (
    Completion,
    Departure,
    EmployeeFacts,
    EmployeeRecord,
    Fact,
    Nomination,
    Void,
)
from dxtalent_certification.domain.state import CertificationState
from dxtalent_contracts.catalog import Catalog

#: The default catalog's courses, by the level whose ● skills they grant.
L1_COURSES = (
    "DX-101",
    "ICT-101",
    "SEC-101",
    "DATA-101",
    "DSGN-101",
    "GAI-101",
    "TOOL-ONL",
    "WS-101",
)
L2_COURSES = ("BPR-201", "DATA-201", "DSGN-201", "TOOL-NC", "TOOL-RPA")
L3_COURSES = ("SEC-301", "BPR-301")
DUTY_COURSES = {"nocode-build": "NC-BUILD", "rpa-ocr-build": "RPA-BUILD"}
EQUIVALENCE_COURSES = ("R6-DX", "R6-DSGN", "R6-DATA")
#: Level 1 skills the FY2024 equivalence courses do not grant.
L1_BEYOND_EQUIVALENCE = ("ICT-101", "SEC-101", "GAI-101", "TOOL-ONL", "WS-101")
_F = TypeVar("_F", EmployeeRecord, Nomination, Completion, Void, Departure)


def d(text: str) -> dt.date:
    """An ISO date, short to write in tests."""
    return dt.date.fromisoformat(text)


class Given:
    """One employee's facts, each with a readable, unique fact id."""

    def __init__(self, employee_id: str = "E000123") -> None:
        self.employee_id = employee_id
        self.facts: list[Fact] = []

    def _id(self, kind: str) -> str:
        return f"{kind}-{len(self.facts) + 1:03d}"

    def _add(self, fact: _F) -> _F:
        self.facts.append(fact)
        return fact

    def record(
        self,
        department: str = "D-SOUMU",
        effective: str = "2023-04-01",
        duty: Iterable[str] = (),
        categories: Iterable[str] = ("dx-leader",),
        fact_id: str | None = None,
    ) -> EmployeeRecord:
        """An employee record effective on `effective`."""
        return self._add(
            EmployeeRecord(
                fact_id=fact_id or self._id("rec"),
                employee_id=self.employee_id,
                department_code=department,
                categories=frozenset(categories),
                duty_skills=frozenset(duty),
                effective_date=d(effective),
            )
        )

    def nomination(self, fiscal_year: int = 2025, department: str = "D-SOUMU") -> Nomination:
        """A nomination as DX leader for `fiscal_year`."""
        return self._add(Nomination(self._id("nom"), self.employee_id, fiscal_year, department))

    def completion(self, course: str, on: str) -> Completion:
        """One completed course."""
        return self._add(Completion(self._id("cmp"), self.employee_id, course, d(on)))

    def completions(self, courses: Iterable[str], on: str) -> list[Completion]:
        """Several courses completed on the same day."""
        return [self.completion(c, on) for c in courses]

    def void(self, completion: Completion, reason: str = "recorded in error") -> Void:
        """A void of `completion`."""
        return self._add(
            Void(
                self._id("void"), self.employee_id, completion.course_id, completion.fact_id, reason
            )
        )

    def departure(self, on: str) -> Departure:
        """The employee left on `on`."""
        return self._add(Departure(self._id("left"), self.employee_id, d(on)))

    @property
    def employee_facts(self) -> EmployeeFacts:
        """Everything given so far, as a set."""
        return EmployeeFacts.of(self.employee_id, self.facts)

    def state(self, catalog: Catalog) -> CertificationState:
        """The state the facts given so far earn."""
        return evaluate(catalog, self.employee_facts)


def replay(
    catalog: Catalog, facts: Iterable[Fact], employee_id: str = "E000123"
) -> tuple[EmployeeFacts, CertificationState, list[list[DomainChange]]]:
    """Decide the facts one at a time, returning the final facts, state and each step's changes."""
    known = EmployeeFacts(employee_id)
    state = CertificationState.empty(employee_id)
    steps: list[list[DomainChange]] = []
    for fact in facts:
        known, state, emitted = decide(catalog, known, state, fact)
        steps.append(emitted)
    return known, state, steps
