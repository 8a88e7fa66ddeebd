"""A realistic city's inbound facts, for the demo and the end-to-end tests.

`generate_city(catalog, seed)` is pure and deterministic: the same catalog, seed and staff
count give the same events with the same ids. The city has ~40 sections (課) with Japanese
names, staff in the plan's categories, effective-dated records with transfers and with ★ duty
skills added in a later year, DX-leader nominations from the catalog's nomination history on
(a few leaders whose HR record never arrives), the 60 FY2024 trainees (their courses inside
FY2024), level cohorts sized from the catalog's targets (with noise: some years under, some
over), staff trainings, enrollments, voided completions, departures (left_on is the first day
no longer employed; a few leaders leave mid-course and complete their last course after
leaving) and improvement cases.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.envelope import CloudEvent, Model
from dxtalent_contracts.fiscal import JST, fiscal_year_end, fiscal_year_of, fiscal_year_start
from dxtalent_contracts.inbound import (
    CompletionVoided,
    CompletionVoidedEvent,
    CourseCompleted,
    CourseCompletedEvent,
    CourseEnrolled,
    CourseEnrolledEvent,
    EmployeeLeft,
    EmployeeLeftEvent,
    EmployeeUpserted,
    EmployeeUpsertedEvent,
    ImprovementCaseReported,
    ImprovementCaseReportedEvent,
    InboundEvent,
    LeaderNominated,
    LeaderNominatedEvent,
)
from dxtalent_contracts.registry import build_event, type_name

NAMESPACE = uuid.UUID("6f1d3a52-0c1e-5b7a-9a43-2d1f8e7c4b90")
EQUIVALENCE_FISCAL_YEAR = 2024
FY2024_TRAINEES = 60
REFERENCE_STAFF = 3000  # the size the plan's headcounts are meant for

SECTION_NAMES = (
    "総務課", "人事課", "財政課", "企画政策課", "情報政策課", "広報課", "危機管理課", "契約課",
    "税務課", "納税課", "市民課", "保険年金課", "福祉総務課", "障害福祉課", "高齢福祉課",
    "生活支援課", "子育て支援課", "保育幼稚園課", "健康づくり課", "保健予防課", "環境政策課",
    "廃棄物対策課", "産業振興課", "観光交流課", "農業振興課", "都市計画課", "建築指導課",
    "住宅政策課", "道路課", "公園みどり課", "下水道課", "上水道課", "消防総務課", "教育総務課",
    "学校教育課", "生涯学習課", "文化振興課", "スポーツ振興課", "選挙管理委員会事務局", "議会事務局",
)  # fmt: skip
IT_SECTION = 4  # 情報政策課
CASE_TITLES = (
    "窓口予約のオンライン化", "申請書様式の電子化", "議事録作成への生成AI活用",
    "RPAによる給付金データ入力の自動化", "AI-OCRによる紙申請の読取", "庁内照会のノーコードアプリ化",
    "統計データのダッシュボード化", "問い合わせ対応FAQの整備", "決裁手続きの見直し",
    "現地調査記録のタブレット化", "会議資料のペーパーレス化", "業務フローの可視化と削減",
)  # fmt: skip
VOID_REASONS = ("受講記録の誤登録", "別の職員の記録として登録", "途中退席のため未修了")
# (category, course, fiscal years, share of the category that completes it); a course the
# catalog does not list is skipped
STAFF_TRAINING = (
    ("executive", "MGT-DX", (2024,), 1.0),
    ("deputy-director", "MGT-DX", (2024,), 1.0),
    ("section-chief", "MGT-DX", (2024,), 1.0),
    ("section-chief", "MGT-DATA", (2025, 2026), 0.6),
    ("all-staff", "ALL-SEC", (2025,), 0.93),
    ("all-staff", "ALL-DX", (2025, 2026), 0.4),
    ("business-system-owner", "SYS-PROC", (2025, 2026), 0.65),
    ("business-system-owner", "SYS-SEC", (2025, 2026), 0.6),
    ("it-department", "SEC-INC", (2025,), 0.8),
    ("it-department", "NC-BUILD", (2026,), 0.4),
    ("it-department", "RPA-BUILD", (2026,), 0.4),
)
MID_COURSE_LEAVERS = 4  # at the reference size: leaders who leave before their last course
UNRECORDED_LEADERS = 3  # at the reference size: nominated leaders whose HR record never arrives
# fact kinds, in the order they are listed when they share a date
_ORDER = {EmployeeUpserted: 0, LeaderNominated: 1, CourseEnrolled: 2, CourseCompleted: 3}
_EVENT_CLASS: dict[type[Model], type[CloudEvent]] = {
    EmployeeUpserted: EmployeeUpsertedEvent,
    EmployeeLeft: EmployeeLeftEvent,
    LeaderNominated: LeaderNominatedEvent,
    CourseEnrolled: CourseEnrolledEvent,
    CourseCompleted: CourseCompletedEvent,
    CompletionVoided: CompletionVoidedEvent,
    ImprovementCaseReported: ImprovementCaseReportedEvent,
}


@dataclass(frozen=True)
class Department:
    """A section (課): `code` like D001 and its Japanese name."""

    code: str
    name: str


@dataclass(frozen=True)
class CitySummary:
    """What the city holds; `planned_level_ups[(fy, level)]` counts the leaders whose courses
    for that level were all completed in that fiscal year (before voids and departures)."""

    departments: int
    employees: int
    without_record: int
    leaders: int
    fy2024_trainees: int
    transfers: int
    duty_changes: int
    departures: int
    completed_after_leaving: int
    nominations: int
    enrollments: int
    completions: int
    voided_completions: int
    improvement_cases: int
    events: int
    planned_level_ups: Mapping[tuple[int, int], int]


@dataclass(frozen=True)
class City:
    """The generated facts, in the order they happened (by fact date, records first)."""

    municipality: str
    seed: int
    departments: tuple[Department, ...]
    events: tuple[InboundEvent, ...]
    fy2024_trainees: tuple[str, ...]
    leaders: tuple[str, ...]
    summary: CitySummary


@dataclass
class _Employee:
    id: str
    section: int
    categories: list[str]
    hired: dt.date
    it_qualified: bool = False
    duty: list[str] = field(default_factory=list)
    duty_from: int | None = None  # fiscal year from which `duty` is on the record; None: hired
    moved_to: int | None = None
    left_on: dt.date | None = None  # the first day no longer employed
    completes_after_leaving: bool = False  # the LMS records a course finished after leaving
    unrecorded: bool = False  # HR never sends this employee's record
    first_nominated: int | None = None
    level_years: dict[int, int] = field(default_factory=dict)

    def section_in(self, fiscal_year: int, transfer_year: int) -> int:
        if self.moved_to is not None and fiscal_year >= transfer_year:
            return self.moved_to
        return self.section

    def duty_in(self, fiscal_year: int) -> list[str]:
        """The ★ duty skills on the record in force during `fiscal_year`."""
        return self.duty if self.duty_from is None or fiscal_year >= self.duty_from else []

    def active_on(self, day: dt.date) -> bool:
        return self.hired <= day and (self.left_on is None or day < self.left_on)


@dataclass(order=True)
class _Fact:
    day: dt.date
    rank: int
    seq: int
    fact_id: str = field(compare=False)
    data: Model = field(compare=False)
    subject: str | None = field(compare=False)


class _Facts:
    """Collects facts with ids made from the seed and a running index (no clock, no uuid4)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[_Fact] = []

    def add(self, day: dt.date, data: Model, subject: str | None) -> str:
        seq = len(self.items)
        fact_id = str(uuid.uuid5(NAMESPACE, f"{self.prefix}/{seq}"))
        rank = _ORDER.get(type(data), len(_ORDER))
        self.items.append(_Fact(day, rank, seq, fact_id, data, subject))
        return fact_id


def _random_day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, max(0, (last - first).days)))


def _month_window(fiscal_year: int, offset: float, span: float) -> tuple[dt.date, dt.date]:
    """Days `offset`..`offset+span` months after April 1 of the fiscal year (30-day months)."""
    start = fiscal_year_start(fiscal_year)
    first = start + dt.timedelta(days=int(offset * 30))
    return first, start + dt.timedelta(days=int((offset + span) * 30) - 1)


def _eligible_leader(emp: _Employee) -> bool:
    """Leaders come from each section's staff, managers and outside specialists excepted."""
    return set(emp.categories) <= {"business-system-owner", "it-department"}


class _Planner:
    """Decides who is who and when: staff, leaders and their level years, moves, departures."""

    def __init__(self, catalog: Catalog, rng: random.Random, staff: int) -> None:
        self.catalog, self.rng, self.staff = catalog, rng, staff
        self.scale = min(1.0, staff / REFERENCE_STAFF)
        self.first_year = catalog.plan.first_fiscal_year
        self.history_from = min(catalog.plan.nomination_history_from, self.first_year)
        self.last_year = catalog.plan.last_fiscal_year
        self.transfer_year = min(self.first_year + 1, self.last_year)
        n_sections = max(IT_SECTION + 1, min(len(SECTION_NAMES), staff // 25))
        self.departments = tuple(
            Department(f"D{i + 1:03d}", name) for i, name in enumerate(SECTION_NAMES[:n_sections])
        )
        self.employees: list[_Employee] = []
        self.trainees: list[_Employee] = []
        self.planned: Counter[tuple[int, int]] = Counter()

    def run(self) -> None:
        self.hire()
        self.first_leaders()
        self.fy2024_trainees()
        for fiscal_year in range(self.first_year, self.last_year + 1):
            for level in range(1, self.catalog.top_level + 1):
                self.cohort(fiscal_year, level)
        self.duties()
        self.mid_course_leavers()
        self.departures()
        self.transfers()
        self.fill_sections()
        self.unrecorded_leaders()

    def _roles(self) -> list[tuple[int, list[str]]]:
        roles: list[tuple[int, list[str]]] = []
        for s in range(len(self.departments)):
            roles += [(s, ["section-chief"]), (s, ["section-chief"])]  # 課長 and 課長代理
            roles += [(s, ["deputy-director"])] * (s % 4 == 0) + [(s, ["executive"])] * (s % 5 == 0)
            roles += [(s, ["business-system-owner"])] * self.rng.randint(1, 3)
        roles += [(IT_SECTION, ["it-department"])] * max(3, round(25 * self.scale))
        return [*roles, *[(IT_SECTION, ["external-specialist"])] * 2]

    def hire(self) -> None:
        rng, sections = self.rng, range(len(self.departments))
        yearly = int(self.staff * 0.02)  # new hires each April of the plan period
        start = fiscal_year_start(self.history_from)
        hires = [(start, role) for role in self._roles()]
        others = max(0, self.staff - len(hires) - yearly * (self.last_year - self.first_year + 1))
        weights = [0.0 if s == IT_SECTION else rng.uniform(0.5, 1.5) for s in sections]
        hires += [(start, (s, [])) for s in rng.choices(sections, weights, k=others)]
        for year in range(self.first_year, self.last_year + 1):
            new = rng.choices(sections, weights, k=yearly)
            hires += [(fiscal_year_start(year), (s, [])) for s in new]
        rng.shuffle(hires)  # employee numbers do not follow sections
        known = set(self.catalog.category_by_code)
        for number, (hired, (section, categories)) in enumerate(hires, 1):
            qualified = rng.random() < (0.2 if section == IT_SECTION else 0.008)
            cats = [c for c in categories if c in known]
            self.employees.append(_Employee(f"E{number:06d}", section, cats, hired, qualified))

    def pool(self, fiscal_year: int, section: int | None = None) -> list[_Employee]:
        """Staff who may be nominated for the first time at the start of `fiscal_year`."""
        start = fiscal_year_start(fiscal_year)
        return [
            e
            for e in self.employees
            if e.first_nominated is None
            and _eligible_leader(e)
            and e.active_on(start)
            and (section is None or e.section_in(fiscal_year, self.transfer_year) == section)
        ]

    def first_leaders(self) -> None:
        """Every section has had a DX leader since the nomination history begins (令和5年度)."""
        by_section: dict[int, list[_Employee]] = {}
        for emp in self.pool(self.history_from):
            by_section.setdefault(emp.section, []).append(emp)
        for candidates in by_section.values():
            qualified = [e for e in candidates if e.it_qualified]  # IT資格枠: DX core members
            self.rng.choice(qualified or candidates).first_nominated = self.history_from

    def fy2024_trainees(self) -> None:
        """The FY2024 level-1-equivalent trainees: the first leaders, then others, up to 60."""
        equivalent = [q for q in self.catalog.equivalences if q.level == 1]
        fiscal_year = EQUIVALENCE_FISCAL_YEAR
        if not equivalent or not self.history_from <= fiscal_year < self.first_year:
            return
        wanted = round(FY2024_TRAINEES * self.scale)
        trainees = [e for e in self.employees if e.first_nominated is not None][:wanted]
        pool = self.pool(fiscal_year)
        trainees += self.rng.sample(pool, min(len(pool), wanted - len(trainees)))
        for emp in trainees:
            emp.first_nominated = emp.first_nominated or fiscal_year
            emp.level_years[1] = fiscal_year
        self.trainees = trainees
        self.planned[(fiscal_year, 1)] = len(trainees)

    def cohort_size(self, fiscal_year: int, level: int) -> int:
        """The target's growth that year, scaled to the city and off by up to -15%..+20%."""
        target = (self.catalog.target(fiscal_year, level) or 0) * self.scale
        previous = self.catalog.target(fiscal_year - 1, level)
        have = (
            previous * self.scale
            if previous is not None
            else sum(level in e.level_years for e in self.employees)
        )
        return max(0, round((target - have) * self.rng.uniform(0.85, 1.2)))

    def cohort(self, fiscal_year: int, level: int) -> None:
        """Leaders who complete every course of `level` in `fiscal_year`."""
        start = fiscal_year_start(fiscal_year)
        if level == 1:
            candidates = [e for e in self.employees if _eligible_leader(e) and not e.level_years]
        else:
            candidates = [
                e
                for e in self.employees
                if e.level_years.get(level - 1, fiscal_year) < fiscal_year
                and level not in e.level_years
            ]
        candidates = [e for e in candidates if e.active_on(start)]
        chosen = self.rng.sample(
            candidates, min(len(candidates), self.cohort_size(fiscal_year, level))
        )
        for emp in chosen:
            emp.level_years[level] = fiscal_year
            emp.first_nominated = emp.first_nominated or fiscal_year
        self.planned[(fiscal_year, level)] += len(chosen)

    def duties(self) -> None:
        """★ skills on the records of half the leaders headed for the top level, and a few more;
        for ~40% of them the duties arrive with a new record in a later year of the plan."""
        duty = self.catalog.level_rule(self.catalog.top_level).duty
        for emp in self.employees:
            share = 0.5 if self.catalog.top_level in emp.level_years else 0.03
            if duty and emp.first_nominated is not None and self.rng.random() < share:
                emp.duty = sorted(self.rng.sample(duty, self.rng.randint(1, len(duty))))
                if self.last_year > self.first_year and self.rng.random() < 0.4:
                    emp.duty_from = self._later_duty_year(emp)
        top = self.catalog.top_level
        early = [
            e
            for e in self.employees
            if e.duty and self.first_year <= e.level_years.get(top, 0) < self.last_year
        ]
        if early and not any(e.duty_from for e in early):  # show it at least once
            chosen = self.rng.choice(early)
            chosen.duty_from = self._later_duty_year(chosen)

    def _later_duty_year(self, emp: _Employee) -> int:
        """The year new duties arrive: after the top level when that is not the last year (a
        level once certified stays), else any later year of the plan."""
        top = emp.level_years.get(self.catalog.top_level, self.last_year)
        if self.first_year <= top < self.last_year:
            return top + 1
        return self.rng.randint(self.first_year + 1, self.last_year)

    def mid_course_leavers(self) -> None:
        """A few leaders leave in November of the year of their last level; the LMS still
        records the courses they finish later (no level is certified on or after leaving)."""
        candidates = [
            e
            for e in self.employees
            if e.level_years and min(e.level_years.values()) >= self.first_year
        ]
        wanted = min(len(candidates), max(1, round(MID_COURSE_LEAVERS * self.scale)))
        for emp in self.rng.sample(candidates, wanted):
            last_year = max(emp.level_years.values())
            emp.left_on = fiscal_year_start(last_year) + dt.timedelta(days=214)  # November 1
            emp.completes_after_leaving = True

    def unrecorded_leaders(self) -> None:
        """A few leaders first nominated in the plan period, whose HR record never arrives:
        their nominations place them in a department."""
        candidates = [
            e
            for e in self.employees
            if e.first_nominated is not None
            and e.first_nominated >= self.first_year
            and e.moved_to is None
            and not e.completes_after_leaving
        ]
        wanted = min(len(candidates), max(1, round(UNRECORDED_LEADERS * self.scale)))
        for emp in self.rng.sample(candidates, wanted):
            emp.unrecorded = True

    def departures(self) -> None:
        """~3% leave each year (mostly at its end: left_on April 1, the first day no longer
        employed); leaders only after their last level."""
        for fiscal_year in range(self.history_from, self.last_year):
            start, end = fiscal_year_start(fiscal_year), fiscal_year_end(fiscal_year)
            for emp in self.employees:
                if emp.left_on is not None or not emp.active_on(start):
                    continue
                if emp.first_nominated is not None:
                    done = max(emp.level_years.values(), default=self.last_year)
                    share = 0.02 if done < fiscal_year else 0.0
                else:
                    share = 0.03
                if self.rng.random() < share:
                    mid_year = _random_day(self.rng, start + dt.timedelta(days=60), end)
                    year_end = fiscal_year_start(fiscal_year + 1)
                    emp.left_on = year_end if self.rng.random() < 0.7 else mid_year

    def transfers(self) -> None:
        """人事異動: ~5% move to another section on April 1 of the plan's second year."""
        start = fiscal_year_start(self.transfer_year)
        targets = [s for s in range(len(self.departments)) if s != IT_SECTION]
        for emp in self.employees:
            fixed = {"executive", "deputy-director", "it-department", "external-specialist"}
            if emp.hired >= start or not emp.active_on(start) or fixed & set(emp.categories):
                continue
            if self.rng.random() < 0.05:
                emp.moved_to = self.rng.choice([s for s in targets if s != emp.section])

    def nominated(self, emp: _Employee, fiscal_year: int) -> bool:
        first = emp.first_nominated
        return (
            first is not None
            and first <= fiscal_year
            and emp.active_on(fiscal_year_start(fiscal_year))
        )

    def fill_sections(self) -> None:
        """A section whose leaders left or moved gets a newly nominated leader that year."""
        for fiscal_year in range(self.history_from, self.last_year + 1):
            covered = {
                e.section_in(fiscal_year, self.transfer_year)
                for e in self.employees
                if self.nominated(e, fiscal_year)
            }
            for section in range(len(self.departments)):
                pool = [] if section in covered else self.pool(fiscal_year, section)
                if pool:
                    self.rng.choice(pool).first_nominated = fiscal_year


class _Emitter:
    """Turns the plan into dated facts: records, nominations, courses, voids and cases."""

    def __init__(self, plan: _Planner, facts: _Facts) -> None:
        self.plan, self.catalog, self.rng, self.facts = plan, plan.catalog, plan.rng, facts
        self.completions: list[tuple[_Employee, str, dt.date, str]] = []
        self.chiefs: dict[int, list[_Employee]] = {}
        for emp in plan.employees:
            if "section-chief" in emp.categories:
                self.chiefs.setdefault(emp.section, []).append(emp)

    def run(self) -> None:
        self.records()
        self.nominations()
        self.level_courses()
        self.partial_attempts()
        self.staff_training()
        self.voids()
        self.improvement_cases()

    def course_for(self, skill: str) -> str | None:
        courses = [
            c
            for c in self.catalog.courses_granting(skill)
            if c.track != "FY2024" and c.offered is None
        ]
        return courses[0].id if courses else None

    def courses_of_level(self, level: int, duty: Iterable[str] = ()) -> list[str]:
        rule = self.catalog.level_rule(level)
        added = self.catalog.skills_added_at(level)
        skills = [s for s in rule.required if s in added] + [s for s in rule.duty if s in duty]
        return list(dict.fromkeys(c for c in map(self.course_for, skills) if c is not None))

    def complete(self, emp: _Employee, course: str, day: dt.date, enroll: float = 0.0) -> None:
        late = (  # finished after leaving, in the year of leaving
            emp.completes_after_leaving
            and emp.left_on is not None
            and fiscal_year_of(day) == fiscal_year_of(emp.left_on)
        )
        if day < emp.hired or not (emp.active_on(day) or late):
            return
        if self.rng.random() < enroll:
            self.enroll(emp, course, day - dt.timedelta(days=self.rng.randint(10, 45)))
        data = CourseCompleted(employee_id=emp.id, course_id=course, completed_on=day)
        self.completions.append((emp, course, day, self.facts.add(day, data, emp.id)))

    def enroll(self, emp: _Employee, course: str, day: dt.date) -> None:
        day = max(day, emp.hired)
        data = CourseEnrolled(employee_id=emp.id, course_id=course, enrolled_on=day)
        self.facts.add(day, data, emp.id)

    def series(self, emp: _Employee, fiscal_year: int, courses: list[str], level: int) -> None:
        """A level's courses in schedule order, from May (level 1) .. July (level 3) to January."""
        offset = float(min(level, 3))
        span = (10 - offset) / max(1, len(courses))
        for i, course in enumerate(courses):
            first, last = _month_window(fiscal_year, offset + i * span, span)
            self.complete(emp, course, _random_day(self.rng, first, last), enroll=0.3)

    def record(self, emp: _Employee, day: dt.date) -> None:
        """The employee's record effective on `day`: section and duties of that fiscal year."""
        fiscal_year = fiscal_year_of(day)
        dept = self.plan.departments[emp.section_in(fiscal_year, self.plan.transfer_year)]
        data = EmployeeUpserted(
            employee_id=emp.id,
            department_code=dept.code,
            department_name=dept.name,
            categories=list(emp.categories),
            it_qualified_hire=emp.it_qualified,
            duty_skills=list(emp.duty_in(fiscal_year)),
            effective_date=day,
        )
        self.facts.add(day, data, emp.id)

    def records(self) -> None:
        """A record on hiring, and a new one on each transfer and each change of duties."""
        moved_on = fiscal_year_start(self.plan.transfer_year)
        for emp in self.plan.employees:
            changes = {emp.hired}
            if emp.moved_to is not None:
                changes.add(moved_on)
            if emp.duty_from is not None:
                changes.add(max(emp.hired, fiscal_year_start(emp.duty_from)))
            for day in sorted(changes):
                if not emp.unrecorded and (emp.left_on is None or day < emp.left_on):
                    self.record(emp, day)
            if emp.left_on is not None:
                data = EmployeeLeft(employee_id=emp.id, left_on=emp.left_on)
                self.facts.add(emp.left_on, data, emp.id)

    def chief(self, section: int, day: dt.date) -> str | None:
        """The section chief (所属長) on `day`, who nominates the section's leaders."""
        return next((e.id for e in self.chiefs.get(section, []) if e.active_on(day)), None)

    def nominations(self) -> None:
        """Each leader is nominated by the section chief every year from the first nomination."""
        for emp in self.plan.employees:
            for fiscal_year in range(self.plan.history_from, self.plan.last_year + 1):
                if not self.plan.nominated(emp, fiscal_year):
                    continue
                section = emp.section_in(fiscal_year, self.plan.transfer_year)
                start = fiscal_year_start(fiscal_year)
                day = _random_day(self.rng, start, start + dt.timedelta(days=20))
                data = LeaderNominated(
                    employee_id=emp.id,
                    fiscal_year=fiscal_year,
                    department_code=self.plan.departments[section].code,
                    nominated_by=self.chief(section, start),
                )
                self.facts.add(day, data, emp.id)

    def level_courses(self) -> None:
        trainees = {e.id for e in self.plan.trainees}
        equivalent = next((q.courses for q in self.catalog.equivalences if q.level == 1), [])
        for emp in self.plan.employees:
            for level, fiscal_year in sorted(emp.level_years.items()):
                if level == 1 and emp.id in trainees:
                    self.series(emp, fiscal_year, list(equivalent), 2)
                else:
                    duty = emp.duty_in(fiscal_year)
                    self.series(emp, fiscal_year, self.courses_of_level(level, duty), level)

    def partial_attempts(self) -> None:
        """Leaders who began the next level's courses in a year without finishing them."""
        for fiscal_year in range(self.plan.first_year, self.plan.last_year + 1):
            for emp in self.plan.employees:
                done = [lv for lv, fy in emp.level_years.items() if fy < fiscal_year]
                following = max(done, default=0) + 1
                if not done or following > self.catalog.top_level or self.rng.random() > 0.12:
                    continue
                if emp.level_years.get(following) == fiscal_year:
                    continue
                courses = self.courses_of_level(following, emp.duty_in(fiscal_year))
                if not courses:
                    continue
                some = self.rng.sample(courses, self.rng.randint(1, max(1, len(courses) - 1)))
                self.series(emp, fiscal_year, some[:-1], following)
                first, last = _month_window(fiscal_year, 8, 2)
                self.enroll(emp, some[-1], _random_day(self.rng, first, last))

    def staff_training(self) -> None:
        """Category knowledge: the managers' DX training in FY2024, all-staff security, etc."""
        for category, course, years, share in STAFF_TRAINING:
            cat = self.catalog.category_by_code.get(category)
            if course not in self.catalog.course_by_id or cat is None:
                continue
            for emp in self.plan.employees:
                if (cat.implicit or category in emp.categories) and self.rng.random() < share:
                    first, last = _month_window(self.rng.choice(years), 2, 8)
                    self.complete(emp, course, _random_day(self.rng, first, last), enroll=0.05)

    def voids(self) -> None:
        """~1.5% of leaders' plan-period completions voided; most are completed again later."""
        recent = [
            c
            for c in self.completions
            if c[0].first_nominated is not None and fiscal_year_of(c[2]) >= self.plan.first_year
        ]
        for emp, course, day, fact_id in self.rng.sample(recent, round(len(recent) * 0.015)):
            voided_on = day + dt.timedelta(days=self.rng.randint(7, 45))
            data = CompletionVoided(
                employee_id=emp.id,
                course_id=course,
                voided_event_id=fact_id,
                reason=self.rng.choice(VOID_REASONS),
            )
            self.facts.add(voided_on, data, emp.id)
            again = voided_on + dt.timedelta(days=self.rng.randint(7, 40))
            if self.rng.random() < 0.7 and fiscal_year_of(again) == fiscal_year_of(day):
                self.complete(emp, course, again)

    def improvement_cases(self) -> None:
        """Cases shared at the yearly report session (共有・報告会) in February."""
        number = 0
        for fiscal_year in range(self.plan.first_year, self.plan.last_year + 1):
            day = _random_day(
                self.rng, dt.date(fiscal_year + 1, 2, 10), dt.date(fiscal_year + 1, 2, 25)
            )
            leaders = [
                e
                for e in self.plan.employees
                if min(e.level_years.values(), default=9999) <= fiscal_year and e.active_on(day)
            ]
            count = round(len(self.plan.departments) * 0.3 * self.rng.uniform(0.8, 1.2))
            for lead in self.rng.sample(leaders, min(count, len(leaders))):
                number += 1
                self.case(f"C{fiscal_year}-{number:03d}", lead, fiscal_year, day)

    def case(self, case_id: str, lead: _Employee, fiscal_year: int, day: dt.date) -> None:
        skills = sorted(
            {s for lv in lead.level_years for s in self.catalog.level_rule(lv).required}
        )
        section = lead.section_in(fiscal_year, self.plan.transfer_year)
        hours = None if self.rng.random() < 0.25 else round(self.rng.uniform(10, 600), 1)
        data = ImprovementCaseReported(
            case_id=case_id,
            department_code=self.plan.departments[section].code,
            fiscal_year=fiscal_year,
            title=self.rng.choice(CASE_TITLES),
            leader_employee_ids=[lead.id],
            skills_applied=sorted(
                self.rng.sample(skills, min(len(skills), self.rng.randint(1, 3)))
            ),
            hours_saved_per_year=hours,
        )
        self.facts.add(day, data, None)


def _envelope(municipality: str, fact: _Fact, time: dt.datetime) -> InboundEvent:
    cls = _EVENT_CLASS[type(fact.data)]
    source = f"urn:{municipality}:{type_name(cls).split('.')[1]}"
    event = build_event(
        cls, event_id=fact.fact_id, source=source, data=fact.data, subject=fact.subject, time=time
    )
    return cast("InboundEvent", event)


def _summary(plan: _Planner, events: list[InboundEvent]) -> CitySummary:
    kinds = Counter(type(e.data) for e in events)
    recorded = {e.data.employee_id for e in events if isinstance(e.data, EmployeeUpserted)}
    everyone = {getattr(e.data, "employee_id", None) for e in events} - {None}
    return CitySummary(
        departments=len(plan.departments),
        employees=len(everyone),
        without_record=len(everyone - recorded),
        leaders=len({e.data.employee_id for e in events if isinstance(e.data, LeaderNominated)}),
        fy2024_trainees=len(plan.trainees),
        transfers=sum(e.moved_to is not None and not e.unrecorded for e in plan.employees),
        duty_changes=sum(e.duty_from is not None and not e.unrecorded for e in plan.employees),
        departures=kinds[EmployeeLeft],
        completed_after_leaving=len(_completed_after_leaving(events)),
        nominations=kinds[LeaderNominated],
        enrollments=kinds[CourseEnrolled],
        completions=kinds[CourseCompleted],
        voided_completions=kinds[CompletionVoided],
        improvement_cases=kinds[ImprovementCaseReported],
        events=len(events),
        planned_level_ups=dict(sorted(plan.planned.items())),
    )


def _completed_after_leaving(events: Iterable[InboundEvent]) -> set[str]:
    """Employees with a completion dated on or after their (earliest) left_on."""
    left: dict[str, dt.date] = {}
    for e in events:
        if isinstance(e.data, EmployeeLeft):
            left[e.data.employee_id] = min(
                e.data.left_on, left.get(e.data.employee_id, e.data.left_on)
            )
    return {
        e.data.employee_id
        for e in events
        if isinstance(e.data, CourseCompleted)
        and e.data.employee_id in left
        and e.data.completed_on >= left[e.data.employee_id]
    }


def generate_city(
    catalog: Catalog, seed: int, staff: int = REFERENCE_STAFF, until: dt.date | None = None
) -> City:
    """A city of `staff` employees (at least the managers every section needs) and its inbound
    facts, the same for the same arguments.

    Facts dated after `until` (when given) are left out, as if generated on that day.
    Event ids are uuid5 of the municipality, seed, staff count and a running index;
    `time` is the fact's date at 09:00 JST plus one second per earlier fact that day.
    """
    code = catalog.municipality.code
    rng = random.Random(f"{code}/{seed}/{staff}")
    plan = _Planner(catalog, rng, staff)
    plan.run()
    facts = _Facts(f"{code}/{seed}/{staff}")
    _Emitter(plan, facts).run()
    per_day: Counter[dt.date] = Counter()
    events: list[InboundEvent] = []
    for fact in sorted(f for f in facts.items if until is None or f.day <= until):
        nine = dt.datetime.combine(fact.day, dt.time(9), JST)
        events.append(_envelope(code, fact, nine + dt.timedelta(seconds=per_day[fact.day])))
        per_day[fact.day] += 1
    leaders = sorted({e.data.employee_id for e in events if isinstance(e.data, LeaderNominated)})
    return City(
        municipality=code,
        seed=seed,
        departments=plan.departments,
        events=tuple(events),
        fy2024_trainees=tuple(sorted(e.id for e in plan.trainees if e.id in set(leaders))),
        leaders=tuple(leaders),
        summary=_summary(plan, events),
    )


def to_json_lines(events: Iterable[CloudEvent]) -> str:
    """One structured-mode CloudEvent per line, as `dxtalent publish --jsonl` reads them."""
    return "".join(event.to_json_bytes().decode() + "\n" for event in events)
