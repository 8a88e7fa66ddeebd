"""The generated city: deterministic per seed, valid facts, and the plan's shape."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from itertools import pairwise
from typing import Any

import pytest
from pydantic import BaseModel

from dxtalent.citygen import City, generate_city, to_json_lines
from dxtalent.csv_import import read_json_lines
from dxtalent.expected import employee_facts
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_contracts.catalog import Catalog, load_catalog, parse_catalog
from dxtalent_contracts.fiscal import fiscal_year_end, fiscal_year_of
from dxtalent_contracts.inbound import (
    CompletionVoided,
    CourseCompleted,
    CourseEnrolled,
    EmployeeLeft,
    EmployeeUpserted,
    ImprovementCaseReported,
    LeaderNominated,
)
from dxtalent_contracts.registry import parse_inbound
from dxtalent_enrollment.domain import inbound_problem

SEED = 20250401


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def city(catalog: Catalog) -> City:
    return generate_city(catalog, seed=SEED)


def _of(city: City, kind: type[BaseModel]) -> list[Any]:
    """The city's events whose data is of `kind` (typed loosely: tests read their fields)."""
    return [e for e in city.events if isinstance(e.data, kind)]


def test_the_same_seed_gives_the_same_facts_and_another_seed_others(
    catalog: Catalog, city: City
) -> None:
    """Generation is pure: equal seeds give byte-equal facts, ids included."""
    assert to_json_lines(generate_city(catalog, seed=SEED).events) == to_json_lines(city.events)
    other = generate_city(catalog, seed=SEED + 1)
    assert {e.id for e in other.events}.isdisjoint({e.id for e in city.events})
    assert other.summary != city.summary


def test_every_generated_fact_parses_back_as_itself(city: City) -> None:
    """Each event is a valid inbound fact: its bytes parse with parse_inbound to an equal model."""
    for event in city.events:
        assert parse_inbound(event.to_json_bytes()) == event


def test_envelopes_follow_the_contract_conventions(city: City) -> None:
    """Unique ids, hr/lms sources, +09:00 times on the fact's date, employee id as subject,
    and facts listed in time order."""
    assert len({e.id for e in city.events}) == len(city.events)
    times = [e.time for e in city.events]
    assert all(t is not None and t.utcoffset() == dt.timedelta(hours=9) for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    for event in _of(city, CourseCompleted):
        assert event.source == "urn:hirakata:lms"
        assert event.subject == event.data.employee_id
        assert event.time is not None
        assert event.time.date() == event.data.completed_on
    assert {e.source for e in _of(city, EmployeeUpserted)} == {"urn:hirakata:hr"}


def test_the_city_has_sections_staff_and_categories_in_plausible_numbers(city: City) -> None:
    """40 sections D001.. with Japanese names, 3000 staff with a few managers, IT staff and
    system owners, some IT-qualified hires, transfers, departures and leaders."""
    assert [d.code for d in city.departments][:3] == ["D001", "D002", "D003"]
    assert len(city.departments) == 40
    assert all(d.name.endswith(("課", "局")) for d in city.departments)
    records = _of(city, EmployeeUpserted)
    first = {e.data.employee_id: e.data for e in reversed(records)}
    assert city.summary.employees == 3000
    assert len(first) == 3000 - city.summary.without_record
    assert min(first) == "E000001"
    categories = Counter(c for r in first.values() for c in r.categories)
    assert categories["section-chief"] == 80
    assert 5 <= categories["executive"] <= 20
    assert 20 <= categories["it-department"] <= 40
    assert 40 <= categories["business-system-owner"] <= 120
    assert 10 <= sum(r.it_qualified_hire for r in first.values()) <= 80
    assert 50 <= city.summary.transfers <= 250
    assert 100 <= city.summary.departures <= 500
    assert 100 <= len(city.leaders) <= 250
    assert city.summary.enrollments > 100
    assert 5 <= city.summary.voided_completions <= 60
    assert city.summary.improvement_cases >= 20


def test_transfers_and_new_duties_are_newer_records(city: City) -> None:
    """A later-dated record moves the employee to another section (on 2026-04-01) or adds ★
    duty skills from April 1 of a later year; each new record changes one of the two."""
    by_employee = defaultdict(list)
    for event in _of(city, EmployeeUpserted):
        by_employee[event.data.employee_id].append(event.data)
    moves, new_duties = 0, 0
    for records in by_employee.values():
        for before, after in pairwise(records):
            assert after.effective_date > before.effective_date
            assert (after.effective_date.month, after.effective_date.day) == (4, 1)
            moved = after.department_code != before.department_code
            assert moved <= (after.effective_date == dt.date(2026, 4, 1))
            added = set(after.duty_skills) - set(before.duty_skills)
            assert moved or added
            moves, new_duties = moves + moved, new_duties + bool(added)
    assert moves == city.summary.transfers
    assert new_duties >= 3


def test_every_section_has_a_nominated_leader_every_year_since_fy2023(city: City) -> None:
    """指名: from FY2023 to FY2027, each section has at least one nominated leader."""
    covered = defaultdict(set)
    for event in _of(city, LeaderNominated):
        covered[event.data.fiscal_year].add(event.data.department_code)
    codes = {d.code for d in city.departments}
    assert {fy: covered[fy] for fy in range(2023, 2028)} == dict.fromkeys(range(2023, 2028), codes)


def test_the_60_fy2024_trainees_were_nominated_and_trained_in_fy2024(city: City) -> None:
    """令和6年度: 60 leaders nominated for FY2024 completed R6-DX, R6-DSGN and R6-DATA that year."""
    assert len(set(city.fy2024_trainees)) == 60 == city.summary.fy2024_trainees
    nominated = {
        e.data.employee_id for e in _of(city, LeaderNominated) if e.data.fiscal_year == 2024
    }
    assert set(city.fy2024_trainees) <= nominated
    taken = defaultdict(set)
    for event in _of(city, CourseCompleted):
        if event.data.course_id.startswith("R6-"):
            assert fiscal_year_of(event.data.completed_on) == 2024
            taken[event.data.employee_id].add(event.data.course_id)
    assert set(taken) == set(city.fy2024_trainees)
    assert all(courses == {"R6-DX", "R6-DSGN", "R6-DATA"} for courses in taken.values())


def test_managers_took_dx_training_in_fy2024_and_staff_took_security(city: City) -> None:
    """MGT-DX completions are FY2024 managers'; ALL-SEC reaches most of the staff."""
    managers = {
        e.data.employee_id
        for e in _of(city, EmployeeUpserted)
        if {"executive", "deputy-director", "section-chief"} & set(e.data.categories)
    }
    mgt = [e.data for e in _of(city, CourseCompleted) if e.data.course_id == "MGT-DX"]
    assert {c.employee_id for c in mgt} <= managers
    assert len(mgt) >= 0.9 * len(managers)
    assert {fiscal_year_of(c.completed_on) for c in mgt} == {2024}
    all_sec = {
        e.data.employee_id for e in _of(city, CourseCompleted) if e.data.course_id == "ALL-SEC"
    }
    assert len(all_sec) >= 0.75 * city.summary.employees


def test_voids_refer_to_earlier_completions_of_the_same_employee_and_course(city: City) -> None:
    """Each CompletionVoided names an existing CourseCompleted id, for that employee and course."""
    completions = {e.id: e for e in _of(city, CourseCompleted)}
    for void in _of(city, CompletionVoided):
        voided = completions[void.data.voided_event_id]
        assert (voided.data.employee_id, voided.data.course_id) == (
            void.data.employee_id,
            void.data.course_id,
        )
        assert voided.time is not None
        assert void.time is not None
        assert voided.time < void.time


def test_enrollments_precede_completions_and_cases_name_leaders(city: City) -> None:
    """Most enrollments are followed within weeks by the completion, none predates the
    employee's record; improvement cases are led by nominated leaders."""
    hired = {
        e.data.employee_id: e.data.effective_date for e in reversed(_of(city, EmployeeUpserted))
    }
    completed = defaultdict(list)
    for event in _of(city, CourseCompleted):
        completed[event.data.employee_id, event.data.course_id].append(event.data.completed_on)
    enrollments = [e.data for e in _of(city, CourseEnrolled)]
    followed = [
        e
        for e in enrollments
        if any(
            0 <= (day - e.enrolled_on).days <= 45 for day in completed[e.employee_id, e.course_id]
        )
    ]
    assert len(followed) >= 0.6 * len(enrollments)
    assert all(e.enrolled_on >= hired.get(e.employee_id, e.enrolled_on) for e in enrollments)
    for event in _of(city, ImprovementCaseReported):
        assert set(event.data.leader_employee_ids) <= set(city.leaders)
        assert event.data.skills_applied


def _reached(city: City, catalog: Catalog, fiscal_year: int) -> dict[int, int]:
    """A rough reading of the level rules: nominated, not left, skills of non-voided completions."""
    end = fiscal_year_end(fiscal_year)
    voided = {e.data.voided_event_id for e in _of(city, CompletionVoided)}
    courses: dict[str, set[str]] = defaultdict(set)
    duty: dict[str, set[str]] = {}
    for event in city.events:
        data = event.data
        if (
            isinstance(data, CourseCompleted)
            and event.id not in voided
            and data.completed_on <= end
        ):
            courses[data.employee_id].add(data.course_id)
        if isinstance(data, EmployeeUpserted) and data.effective_date <= end:
            duty[data.employee_id] = set(data.duty_skills)
    left = {e.data.employee_id for e in _of(city, EmployeeLeft) if e.data.left_on <= end}
    nominated = {
        e.data.employee_id for e in _of(city, LeaderNominated) if e.data.fiscal_year <= fiscal_year
    }
    reached = dict.fromkeys(range(1, catalog.top_level + 1), 0)
    for emp in nominated - left:
        skills = {s for c in courses[emp] for s in catalog.course_by_id[c].grants}
        level = int(set(catalog.equivalences[0].courses) <= courses[emp])
        for n in range(1, catalog.top_level + 1):
            duties = duty.get(emp, set())
            need = catalog.skills_added_at(n) | (set(catalog.level_rule(n).duty) & duties)
            level = n if level >= n - 1 and need <= skills else level
        for n in range(1, level + 1):
            reached[n] += 1
    return reached


def test_targets_are_roughly_met_but_not_exactly(catalog: Catalog, city: City) -> None:
    """Cohorts follow the targets within ±25% (some years under, some over), never exactly all."""
    table = {
        (fy, level): (count, catalog.target(fy, level) or 0)
        for fy in (2025, 2026, 2027)
        for level, count in _reached(city, catalog, fy).items()
    }
    for (fy, level), (count, target) in table.items():
        assert abs(count - target) <= max(3, 0.25 * target), (fy, level, count, target)
    assert any(count != target for count, target in table.values())


def test_until_keeps_only_the_facts_known_by_that_day(catalog: Catalog, city: City) -> None:
    """`until` cuts the same history at a date: the facts up to it, unchanged."""
    day = dt.date(2025, 9, 30)
    early = generate_city(catalog, seed=SEED, until=day)
    assert early.events == tuple(
        e for e in city.events if e.time is not None and e.time.date() <= day
    )


def test_json_lines_hold_one_event_per_line(city: City) -> None:
    """to_json_lines writes what read_json_lines reads back, one fact per line."""
    events = city.events[:50]
    lines = read_json_lines(to_json_lines(events))
    assert [parse_inbound(raw) for raw in lines] == list(events)


SMALL_CITY = """\
policy_version: minoh-2026.1
municipality: {code: minoh, name: 箕面市}
plan: {name: 箕面市DX人材育成方針, first_fiscal_year: 2026, last_fiscal_year: 2027,
       nomination_history_from: 2026}
areas: [{code: ICT, name: ICT}]
skills:
  - {code: basics, name: 基礎, area: ICT}
  - {code: kintone, name: kintone活用, area: ICT}
levels:
  - {level: 1, name: 初級, required: [basics]}
  - {level: 2, name: 上級, required: [basics, kintone]}
courses:
  - {id: M-BASE, name: DX入門, grants: [basics], track: L1}
  - {id: M-KIN, name: kintone研修, grants: [kintone], track: L2}
categories:
  - {code: all-staff, name: 全職員, implicit: true, required: [basics]}
targets:
  - {fiscal_year: 2026, level: 1, headcount: 30}
  - {fiscal_year: 2027, level: 1, headcount: 50}
  - {fiscal_year: 2027, level: 2, headcount: 10}
"""


def test_another_municipalitys_catalog_drives_the_generator() -> None:
    """A two-level catalog without an FY2024 equivalence yields its own valid facts."""
    small = parse_catalog(SMALL_CITY, "small-city")
    city = generate_city(small, seed=1, staff=400)
    assert city.fy2024_trainees == ()
    assert {e.source for e in city.events} <= {"urn:minoh:hr", "urn:minoh:lms"}
    courses = {e.data.course_id for e in _of(city, CourseCompleted)}
    assert courses <= {"M-BASE", "M-KIN"}
    assert "M-KIN" in courses
    assert all(parse_inbound(e.to_json_bytes()) == e for e in city.events)


def test_every_generated_fact_is_accepted_by_enrollment(catalog: Catalog, city: City) -> None:
    """No generated fact is bad input: FY2024 courses inside FY2024, every code in the catalog."""
    refused = [
        (e.id, problem.reason)
        for e in city.events
        if (problem := inbound_problem(catalog, e, e.nats_subject)) is not None
    ]
    assert refused == []


def test_staff_take_the_all_staff_dx_e_learning(city: City) -> None:
    """ALL-DX (自治体DX基礎 e-learning) reaches a good share of the staff in FY2025-FY2026."""
    all_dx = [e.data for e in _of(city, CourseCompleted) if e.data.course_id == "ALL-DX"]
    assert len({c.employee_id for c in all_dx}) >= 0.25 * city.summary.employees
    assert {fiscal_year_of(c.completed_on) for c in all_dx} == {2025, 2026}


def test_leaders_who_leave_mid_course_are_certified_nothing_after_leaving(
    catalog: Catalog, city: City
) -> None:
    """Some leaders finish a course after left_on; the core dates no level on or after it."""
    facts = employee_facts(city.events)
    late = {
        emp
        for emp, f in facts.items()
        if (left := f.left_on()) is not None
        and f.nominations
        and any(c.completed_on >= left for c in f.completions)
    }
    assert len(late) == city.summary.completed_after_leaving >= 3
    for emp in late:
        left_on = facts[emp].left_on()
        assert left_on is not None
        levels = evaluate(catalog, facts[emp]).levels.values()
        assert all(level.certified_on < left_on for level in levels)


def test_duties_added_in_a_later_year_keep_a_level_earned_before(
    catalog: Catalog, city: City
) -> None:
    """A leader certified at the top level before a record adds ★ skills keeps that level."""
    top = catalog.top_level
    duty = set(catalog.level_rule(top).duty)
    kept = []
    for emp, f in employee_facts(city.events).items():
        level = evaluate(catalog, f).levels.get(top)
        if level is None or duty & f.duty_skills_on(level.certified_on):
            continue
        if any(r.effective_date > level.certified_on and duty & r.duty_skills for r in f.records):
            kept.append(emp)
    assert kept


def test_a_few_nominated_leaders_have_no_hr_record(city: City) -> None:
    """Their record never arrives: nominated, trained, but no EmployeeUpserted at all."""
    recorded = {e.data.employee_id for e in _of(city, EmployeeUpserted)}
    nominated = {e.data.employee_id for e in _of(city, LeaderNominated)}
    assert 1 <= len(nominated - recorded) == city.summary.without_record <= 5
