"""One employee's facts, as the certification rules read them.

Facts are values: the same fact twice is one fact, and nothing here depends on the order in
which facts arrived. Every look-up that could meet a tie (two records effective on the same
day, two nominations in one fiscal year) breaks it by `fact_id`, so the answer is a function of
the set of facts only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from dxtalent_contracts.fiscal import fiscal_year_of


@dataclass(frozen=True, slots=True)
class EmployeeRecord:
    """An effective-dated HR record: the latest one on or before a date applies on that date."""

    fact_id: str
    employee_id: str
    department_code: str
    categories: frozenset[str]
    duty_skills: frozenset[str]
    effective_date: dt.date
    it_qualified_hire: bool = False


@dataclass(frozen=True, slots=True)
class Nomination:
    """The head of section nominated the employee as DX promotion leader for a fiscal year."""

    fact_id: str
    employee_id: str
    fiscal_year: int
    department_code: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A completed course; `fact_id` is the inbound CloudEvent id, which voids refer to."""

    fact_id: str
    employee_id: str
    course_id: str
    completed_on: dt.date


@dataclass(frozen=True, slots=True)
class Void:
    """A completion recorded in error. It matches the completion whose `fact_id` is
    `voided_fact_id`; `course_id` is informative only (it is not used to match)."""

    fact_id: str
    employee_id: str
    course_id: str
    voided_fact_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Departure:
    """The employee left on `left_on` (their last day)."""

    fact_id: str
    employee_id: str
    left_on: dt.date


Fact = EmployeeRecord | Nomination | Completion | Void | Departure


@dataclass(frozen=True, slots=True)
class EmployeeFacts:
    """Every fact known about one employee, as sets (idempotent, order-free)."""

    employee_id: str
    records: frozenset[EmployeeRecord] = field(default_factory=frozenset)
    nominations: frozenset[Nomination] = field(default_factory=frozenset)
    completions: frozenset[Completion] = field(default_factory=frozenset)
    voids: frozenset[Void] = field(default_factory=frozenset)
    departures: frozenset[Departure] = field(default_factory=frozenset)

    @classmethod
    def of(cls, employee_id: str, facts: Iterable[Fact]) -> EmployeeFacts:
        """The facts of `employee_id` gathered from `facts` (duplicates collapse)."""
        result = cls(employee_id)
        for fact in facts:
            result = result.with_fact(fact)
        return result

    def with_fact(self, fact: Fact) -> EmployeeFacts:
        """These facts plus `fact`; a fact already known returns `self` unchanged.

        Two facts are the same fact when all their fields are equal (upstream, enrollment has
        already collapsed re-deliveries of one CloudEvent id). Raises `ValueError` for a fact
        about another employee.
        """
        if fact.employee_id != self.employee_id:
            raise ValueError(
                f"fact {fact.fact_id} is about employee {fact.employee_id}, not {self.employee_id}"
            )
        match fact:
            case EmployeeRecord() if fact not in self.records:
                return replace(self, records=self.records | {fact})
            case Nomination() if fact not in self.nominations:
                return replace(self, nominations=self.nominations | {fact})
            case Completion() if fact not in self.completions:
                return replace(self, completions=self.completions | {fact})
            case Void() if fact not in self.voids:
                return replace(self, voids=self.voids | {fact})
            case Departure() if fact not in self.departures:
                return replace(self, departures=self.departures | {fact})
        return self

    # --- look-ups the rules need (all deterministic for a given set of facts) -------------

    def latest_record(self) -> EmployeeRecord | None:
        """The record with the latest effective date (tie: the greatest fact_id)."""
        return max(self.records, key=_record_key, default=None)

    def record_on(self, day: dt.date) -> EmployeeRecord | None:
        """The record effective on `day`: the latest whose effective_date is on or before it."""
        effective = (r for r in self.records if r.effective_date <= day)
        return max(effective, key=_record_key, default=None)

    def earliest_record(self) -> EmployeeRecord | None:
        """The record with the earliest effective date (tie: the smallest fact_id)."""
        return min(self.records, key=_record_key, default=None)

    def duty_skills(self) -> frozenset[str]:
        """★ duty skills from the latest record; no record means no duty skills."""
        latest = self.latest_record()
        return latest.duty_skills if latest else frozenset()

    def categories(self) -> frozenset[str]:
        """Staff categories from the latest record (the implicit all-staff is not added)."""
        latest = self.latest_record()
        return latest.categories if latest else frozenset()

    def first_nomination_year(self) -> int | None:
        """The fiscal year of the employee's first nomination, if ever nominated."""
        return min((n.fiscal_year for n in self.nominations), default=None)

    def left_on(self) -> dt.date | None:
        """The earliest departure date, if the employee left (a rehire is not modelled)."""
        return min((d.left_on for d in self.departures), default=None)

    def department_on(self, day: dt.date) -> str | None:
        """Where the employee belonged on `day`.

        The record effective on `day`; else the earliest record (the employee was recorded only
        later); else the nomination for the fiscal year of `day`; else the latest nomination;
        else None.
        """
        record = self.record_on(day) or self.earliest_record()
        if record is not None:
            return record.department_code
        fiscal_year = fiscal_year_of(day)
        that_year = [n for n in self.nominations if n.fiscal_year == fiscal_year]
        nomination = max(that_year or self.nominations, key=_nomination_key, default=None)
        return nomination.department_code if nomination else None


def _record_key(record: EmployeeRecord) -> tuple[dt.date, str]:
    return record.effective_date, record.fact_id


def _nomination_key(nomination: Nomination) -> tuple[int, str]:
    return nomination.fiscal_year, nomination.fact_id
