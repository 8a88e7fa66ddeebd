"""One employee's facts, as the certification rules read them.

Facts are values: the same fact twice is one fact, and nothing here depends on the order in
which facts arrived. Every look-up that could meet a tie (two records effective on the same
day, two nominations in one fiscal year) breaks it by `fact_id`, so the answer is a function of
the set of facts only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from dxtalent_contracts.fiscal import fiscal_year_start


@dataclass(frozen=True, slots=True)
class EmployeeRecord:
    """An effective-dated HR record: on a date, the latest one effective on or before it is in
    force (its department, categories and duty skills are the facts about that date)."""

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
    """The employee left: `left_on` is the first day they are no longer employed."""

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
        # built field by field rather than with `dataclasses.replace` (a hot path: once per
        # fact applied); the other sets are shared, unchanged
        e, r, n, c, v, d = (
            self.employee_id,
            self.records,
            self.nominations,
            self.completions,
            self.voids,
            self.departures,
        )
        match fact:
            case EmployeeRecord() if fact not in r:
                return EmployeeFacts(e, r | {fact}, n, c, v, d)
            case Nomination() if fact not in n:
                return EmployeeFacts(e, r, n | {fact}, c, v, d)
            case Completion() if fact not in c:
                return EmployeeFacts(e, r, n, c | {fact}, v, d)
            case Void() if fact not in v:
                return EmployeeFacts(e, r, n, c, v | {fact}, d)
            case Departure() if fact not in d:
                return EmployeeFacts(e, r, n, c, v, d | {fact})
        return self

    def knows(self, fact: Fact) -> bool:
        """Whether `fact` is already among these facts: `with_fact` would return `self`."""
        match fact:
            case EmployeeRecord():
                return fact in self.records
            case Nomination():
                return fact in self.nominations
            case Completion():
                return fact in self.completions
            case Void():
                return fact in self.voids
            case Departure():
                return fact in self.departures

    # --- look-ups the rules need (all deterministic for a given set of facts) -------------

    def record_on(self, day: dt.date) -> EmployeeRecord | None:
        """The record in force on `day`: the latest whose effective_date is on or before it
        (tie: the greatest fact_id); None when no record is in force yet."""
        effective = (r for r in self.records if r.effective_date <= day)
        return max(effective, key=_record_key, default=None)

    def earliest_record(self) -> EmployeeRecord | None:
        """The record with the earliest effective date (tie: the smallest fact_id)."""
        return min(self.records, key=_record_key, default=None)

    def duty_skills_on(self, day: dt.date) -> frozenset[str]:
        """★ duty skills of the record in force on `day`; none in force means none."""
        record = self.record_on(day)
        return record.duty_skills if record else frozenset()

    def categories_on(self, day: dt.date) -> frozenset[str]:
        """Staff categories of the record in force on `day` (the implicit all-staff is not
        added); none in force means none."""
        record = self.record_on(day)
        return record.categories if record else frozenset()

    def record_dates(self) -> frozenset[dt.date]:
        """Every day on which a record takes effect (the days duties may change)."""
        return frozenset(r.effective_date for r in self.records)

    def first_nomination_year(self) -> int | None:
        """The fiscal year of the employee's first nomination, if ever nominated."""
        return min((n.fiscal_year for n in self.nominations), default=None)

    def left_on(self) -> dt.date | None:
        """The earliest departure date, if the employee left (a rehire is not modelled)."""
        return min((d.left_on for d in self.departures), default=None)

    def department_on(self, day: dt.date) -> str | None:
        """Where the employee belonged on `day`.

        The record in force on `day`, else the earliest record (the employee was recorded only
        later); without records, the same with nominations, each in force from April 1 of its
        fiscal year (tie: the greatest fact_id); else None.
        """
        record = self.record_on(day) or self.earliest_record()
        if record is not None:
            return record.department_code
        started = [n for n in self.nominations if fiscal_year_start(n.fiscal_year) <= day]
        if started:
            return max(started, key=_nomination_key).department_code
        first = min(self.nominations, key=_nomination_key, default=None)
        return first.department_code if first else None


def _record_key(record: EmployeeRecord) -> tuple[dt.date, str]:
    return record.effective_date, record.fact_id


def _nomination_key(nomination: Nomination) -> tuple[int, str]:
    return nomination.fiscal_year, nomination.fact_id
