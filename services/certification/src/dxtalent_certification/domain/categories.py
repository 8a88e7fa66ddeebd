"""Staff categories (デジタル人材区分) and the knowledge each requires (docs/rules.md).

Decisions where the rules are silent:
- Only active employees are members of any category (a departed section chief is no longer
  one); all-staff (`implicit: true`) holds every active employee.
- Categories on a date come from the employee record in force on it (a record not yet in force
  changes nothing; none in force: no category but all-staff); a category code the catalog does
  not know is ignored.
- Skills count from the day they were acquired: a completion dated after the report date does
  not make anyone compliant yet.
- An employee is active on a date when they never left, or left after it (left_on is the first
  day no longer employed, as in the target report).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dxtalent_certification.domain.facts import EmployeeFacts
from dxtalent_certification.domain.state import CertificationState
from dxtalent_contracts.catalog import Catalog


@dataclass(frozen=True, slots=True)
class StaffMember:
    """What the category report needs of one employee."""

    employee_id: str
    categories: frozenset[str]
    active: bool
    skills: frozenset[str]


@dataclass(frozen=True, slots=True)
class CategoryStatus:
    """One category: who is in it, who holds all it requires, and what the others miss.

    `members` and `compliant` are sorted employee ids; `missing_by_employee` maps each
    non-compliant member to the sorted skill codes they lack.
    """

    code: str
    name: str
    required: frozenset[str]
    members: tuple[str, ...]
    compliant: tuple[str, ...]
    missing_by_employee: Mapping[str, tuple[str, ...]]


def staff_member(facts: EmployeeFacts, state: CertificationState, on: dt.date) -> StaffMember:
    """One employee as the category report sees them on `on`."""
    left_on = facts.left_on()
    return StaffMember(
        employee_id=facts.employee_id,
        categories=facts.categories_on(on),
        active=left_on is None or left_on > on,
        skills=frozenset(s for s, held in state.skills.items() if held.acquired_on <= on),
    )


def category_statuses(catalog: Catalog, staff: Iterable[StaffMember]) -> tuple[CategoryStatus, ...]:
    """Every category of the catalog, in catalog order, with its members' compliance."""
    active = sorted((m for m in staff if m.active), key=lambda m: m.employee_id)
    return tuple(_status(catalog, code, active) for code in catalog.category_by_code)


def _status(catalog: Catalog, code: str, active: list[StaffMember]) -> CategoryStatus:
    category = catalog.category_by_code[code]
    required = catalog.category_requirements(code)
    members = [m for m in active if category.implicit or code in m.categories]
    missing = {m.employee_id: tuple(sorted(required - m.skills)) for m in members}
    return CategoryStatus(
        code=code,
        name=category.name,
        required=required,
        members=tuple(m.employee_id for m in members),
        compliant=tuple(e for e, lacks in missing.items() if not lacks),
        missing_by_employee=MappingProxyType({e: lacks for e, lacks in missing.items() if lacks}),
    )
