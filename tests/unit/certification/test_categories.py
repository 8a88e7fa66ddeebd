"""Staff categories and the knowledge each requires."""

from __future__ import annotations

from dxtalent_certification.domain.categories import (
    CategoryStatus,
    StaffMember,
    category_statuses,
    staff_member,
)
from dxtalent_contracts.catalog import load_catalog
from tests.unit.certification.builders import Given, d

CATALOG = load_catalog()


def member(
    employee_id: str, *categories: str, skills: tuple[str, ...] = (), active: bool = True
) -> StaffMember:
    """A staff member with categories and held skills."""
    return StaffMember(employee_id, frozenset(categories), active, frozenset(skills))


def status_of(code: str, staff: list[StaffMember]) -> CategoryStatus:
    """The status of one category."""
    return next(s for s in category_statuses(CATALOG, staff) if s.code == code)


def test_section_chiefs_need_dx_basics_security_and_data_utilization() -> None:
    """A section chief without MGT-DATA misses data-utilization; one with all three complies."""
    staff = [
        member("E1", "section-chief", skills=("municipal-dx-basics", "infosec-measures")),
        member(
            "E2",
            "section-chief",
            skills=("municipal-dx-basics", "infosec-measures", "data-utilization"),
        ),
    ]
    status = status_of("section-chief", staff)
    assert status.required == {"municipal-dx-basics", "infosec-measures", "data-utilization"}
    assert (status.members, status.compliant) == (("E1", "E2"), ("E2",))
    assert status.missing_by_employee == {"E1": ("data-utilization",)}


def test_the_it_department_needs_every_level_three_skill_and_its_own() -> None:
    """it-department = level 3 (● and ★) + nocode-build, rpa-ocr-build, incident-response."""
    rule = CATALOG.level_rule(3)
    expected = {*rule.required, *rule.duty, "incident-response"}
    status = status_of("it-department", [member("E1", "it-department", skills=tuple(expected))])
    assert status.required == expected
    assert status.compliant == ("E1",)


def test_every_active_employee_is_in_all_staff_without_being_told() -> None:
    """all-staff is implicit: every active employee, whatever their categories; leavers not."""
    staff = [
        member("E1", "section-chief", skills=("municipal-dx-basics", "infosec-measures")),
        member("E2"),
        member("E3", "executive", active=False),
    ]
    status = status_of("all-staff", staff)
    assert status.members == ("E1", "E2")
    assert status.compliant == ("E1",)
    assert status.missing_by_employee == {"E2": ("infosec-measures", "municipal-dx-basics")}
    assert status_of("executive", staff).members == ()


def test_external_specialists_are_required_nothing() -> None:
    """高度専門人材 support and consult: every member complies with no skill at all."""
    status = status_of("external-specialist", [member("E1", "external-specialist")])
    assert (status.required, status.compliant, dict(status.missing_by_employee)) == (
        frozenset(),
        ("E1",),
        {},
    )


def test_categories_are_reported_in_catalog_order_and_unknown_codes_are_ignored() -> None:
    """One status per catalog category; a category code the catalog lacks counts nowhere."""
    statuses = category_statuses(CATALOG, [member("E1", "astronaut")])
    assert [s.code for s in statuses] == [c.code for c in CATALOG.categories]
    assert [s.code for s in statuses if s.members] == ["all-staff"]


def test_a_staff_member_is_read_from_the_facts_and_state() -> None:
    """Categories from the record in force, skills held that day, active until left_on."""
    given = Given()
    given.record(effective="2023-04-01", categories=("executive",))
    given.record(effective="2025-04-01", categories=("section-chief", "business-system-owner"))
    given.completion("MGT-DX", "2024-10-01")
    given.departure("2026-03-31")
    state = given.state(CATALOG)
    before = staff_member(given.employee_facts, state, d("2026-03-30"))
    assert before.categories == {"section-chief", "business-system-owner"}
    assert before.active
    assert before.skills == {"municipal-dx-basics"}
    assert not staff_member(given.employee_facts, state, d("2026-03-31")).active
