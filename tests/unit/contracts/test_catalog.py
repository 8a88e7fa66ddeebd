"""The catalog: the shipped Hirakata plan as data, refusals that point at the line, other cities."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from dxtalent_contracts.catalog import Catalog, CatalogError, load_catalog, parse_catalog

DX_LEADER_SKILLS = {
    "leadership": "ICT",
    "dx-basics": "ICT",
    "ict-basics": "ICT",
    "data-basic": "Data",
    "data-applied": "Data",
    "design-basic": "Design",
    "design-applied": "Design",
    "bpr-basic": "Design",
    "bpr-applied": "Design",
    "nocode-use": "ICT",
    "nocode-build": "ICT",
    "genai-use": "ICT",
    "online-procedures": "ICT",
    "rpa-ocr-use": "ICT",
    "rpa-ocr-build": "ICT",
    "security-basic": "ICT",
    "security-applied": "ICT",
}
STAFF_SKILLS = {
    "municipal-dx-basics",
    "infosec-measures",
    "data-utilization",
    "system-procurement",
    "infosec-systems",
    "incident-response",
}
#: The day before FY2024, its first and last day, and the day after.
DAYS = ("2024-03-31", "2024-04-01", "2025-03-31", "2025-04-01")
LEVEL_1 = {
    "leadership",
    "dx-basics",
    "ict-basics",
    "data-basic",
    "design-basic",
    "genai-use",
    "online-procedures",
    "security-basic",
}


@pytest.fixture(scope="module")
def hirakata() -> Catalog:
    return load_catalog()


def test_default_catalog_has_the_skill_map_of_the_plan(hirakata: Catalog) -> None:
    """17 DX-leader skills in their areas plus the 6 skills staff categories require."""
    assert hirakata.policy_version == "hirakata-2025.2"
    assert hirakata.municipality.code == "hirakata"
    assert {s.code: s.area for s in hirakata.skills if s.code in DX_LEADER_SKILLS} == (
        DX_LEADER_SKILLS
    )
    assert {s.code for s in hirakata.skills} == set(DX_LEADER_SKILLS) | STAFF_SKILLS
    assert len(hirakata.skills) == 23


def test_default_levels_add_skills_in_order_with_duty_skills_at_level_three(
    hirakata: Catalog,
) -> None:
    """● at level 1, what levels 2 and 3 add over the level below, ★ only at level 3."""
    assert hirakata.top_level == 3
    assert hirakata.skills_added_at(1) == LEVEL_1
    assert hirakata.skills_added_at(2) == {
        "data-applied",
        "design-applied",
        "bpr-basic",
        "nocode-use",
        "rpa-ocr-use",
    }
    assert hirakata.skills_added_at(3) == {"bpr-applied", "security-applied"}
    assert [r.duty for r in hirakata.levels] == [[], [], ["nocode-build", "rpa-ocr-build"]]


def test_default_courses_grant_the_skills_of_the_schedule(hirakata: Catalog) -> None:
    """Every DX-leader and staff skill has a course; the leadership workshop grants leadership."""
    for skill in set(DX_LEADER_SKILLS) | STAFF_SKILLS:
        assert hirakata.courses_granting(skill), skill
    assert hirakata.course_by_id["WS-101"].grants == ["leadership"]
    assert hirakata.course_by_id["MGT-DX"].grants == ["municipal-dx-basics"]
    assert hirakata.course_by_id["DX-101"].grants == ["dx-basics", "municipal-dx-basics"]
    all_dx = hirakata.course_by_id["ALL-DX"]
    assert (all_dx.name, all_dx.grants, all_dx.track) == (
        "全職員 自治体DX基礎（e-ラーニング）",
        ["municipal-dx-basics"],
        "staff",
    )
    assert {c.id for c in hirakata.courses if c.track == "L3"} == {
        "SEC-301",
        "BPR-301",
        "NC-BUILD",
        "RPA-BUILD",
    }


def test_default_fy2024_courses_are_a_level_one_equivalence(hirakata: Catalog) -> None:
    """R6-DX, R6-DSGN and R6-DATA together certify level 1; each grants its one skill."""
    [equivalence] = hirakata.equivalences
    assert equivalence.level == 1
    assert equivalence.courses == ["R6-DX", "R6-DSGN", "R6-DATA"]
    grants = {c: hirakata.course_by_id[c].grants for c in equivalence.courses}
    assert grants == {
        "R6-DX": ["dx-basics"],
        "R6-DSGN": ["design-basic"],
        "R6-DATA": ["data-basic"],
    }
    assert all(hirakata.course_by_id[c].track == "FY2024" for c in equivalence.courses)


def test_the_fy2024_courses_ran_only_in_fy2024(hirakata: Catalog) -> None:
    """R6-*: offered 2024-04-01 .. 2025-03-31, both included; every other course any day."""
    offered = {c.id: c.offered for c in hirakata.courses if c.offered is not None}
    assert set(offered) == {"R6-DX", "R6-DSGN", "R6-DATA"}
    for period in offered.values():
        assert (period.first_day, period.last_day) == (date(2024, 4, 1), date(2025, 3, 31))
        assert period.describe() == "FY2024 (令和6年度), 2024-04-01 to 2025-03-31"
    r6 = hirakata.course_by_id["R6-DX"]
    assert [r6.offered_on(date.fromisoformat(d)) for d in DAYS] == [False, True, True, False]
    assert all(hirakata.course_by_id["DX-101"].offered_on(date.fromisoformat(d)) for d in DAYS)


def test_default_targets_are_the_plans_headcounts(hirakata: Catalog) -> None:
    """到達目標人数 for FY2025–FY2027, cumulative, level 3 starting at zero."""
    table = {
        (fy, level): hirakata.target(fy, level) for fy in (2025, 2026, 2027) for level in (1, 2, 3)
    }
    assert table == {
        (2025, 1): 100,
        (2025, 2): 20,
        (2025, 3): 0,
        (2026, 1): 130,
        (2026, 2): 40,
        (2026, 3): 10,
        (2027, 1): 150,
        (2027, 2): 60,
        (2027, 3): 30,
    }
    assert hirakata.fiscal_years == [2025, 2026, 2027]
    assert hirakata.target(2028, 1) is None


def test_default_categories_and_policy(hirakata: Catalog) -> None:
    """All-staff is implicit; the IT department needs every level-3 skill; defaults are on."""
    assert hirakata.category_by_code["all-staff"].implicit
    assert hirakata.category_requirements("all-staff") == {
        "municipal-dx-basics",
        "infosec-measures",
    }
    it = hirakata.category_requirements("it-department")
    assert set(hirakata.level_rule(3).required) | {"incident-response", "nocode-build"} <= it
    assert hirakata.category_requirements("external-specialist") == frozenset()
    assert hirakata.plan.nomination_history_from == 2023
    assert hirakata.policy.nomination_required
    assert hirakata.policy.nomination_floor
    assert hirakata.policy.duty_skills_required


# --- another municipality, and malformed files ---------------------------------------------------

MINOH = """\
# A second city's plan: two levels, its own courses, no equivalence.
policy_version: minoh-2026.1
municipality: {code: minoh, name: 箕面市}
plan: {name: 箕面市DX人材育成方針, first_fiscal_year: 2026, last_fiscal_year: 2027,
       nomination_history_from: 2026}
policy: {nomination_required: false}
areas:
  - {code: ICT, name: ICT}
skills:
  - {code: basics, name: 基礎, area: ICT}
  - {code: kintone, name: kintone活用, area: ICT}
  - {code: security, name: セキュリティ, area: ICT}
levels:
  - {level: 1, name: 初級, required: [basics, security]}
  - {level: 2, name: 上級, required: [basics, security, kintone]}
courses:
  - {id: M-BASE, name: DX入門, grants: [basics, security], track: L1}
  - {id: M-KIN, name: kintone研修, grants: [kintone], track: L2}
categories:
  - {code: all-staff, name: 全職員, implicit: true, required: [security]}
targets:
  - {fiscal_year: 2026, level: 1, headcount: 30}
  - {fiscal_year: 2026, level: 2, headcount: 5}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "city.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line(text: str, fragment: str) -> int:
    """1-based number of the first line containing `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_a_second_municipalitys_catalog_loads_without_code_changes(tmp_path: Path) -> None:
    """Two levels, other courses, one course granting two skills: the same code serves it."""
    minoh = load_catalog(_write(tmp_path, MINOH))
    assert minoh.municipality.name == "箕面市"
    assert minoh.top_level == 2
    assert minoh.skills_added_at(2) == {"kintone"}
    assert [c.id for c in minoh.courses_granting("security")] == ["M-BASE"]
    assert minoh.equivalences == []
    assert not minoh.policy.nomination_required
    assert minoh.policy.nomination_floor  # a setting left out keeps its default
    assert minoh.target(2026, 1) == 30
    assert minoh.category_requirements("all-staff") == {"security"}


def _refused(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_a_file_that_is_not_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    """Broken YAML: the file, 'not valid YAML' and the parser's line."""
    text = MINOH.replace("  - {code: kintone, name: kintone活用, area: ICT}", "  - {code: [kintone")
    message = _refused(tmp_path, text)
    assert "not valid YAML" in message
    assert "line " in message


def test_a_value_of_the_wrong_type_is_refused_at_its_line(tmp_path: Path) -> None:
    """A headcount that is not a number: file:line, the field path and the problem."""
    text = MINOH.replace("level: 2, headcount: 5", "level: 2, headcount: five")
    message = _refused(tmp_path, text)
    line = _line(text, "headcount: five")
    assert f"city.yaml:{line}: targets.1.headcount: Input should be a valid integer" in message


def test_a_missing_section_is_refused_by_name(tmp_path: Path) -> None:
    """A catalog without targets says which top-level key is missing."""
    text = MINOH.split("targets:", maxsplit=1)[0]
    assert "targets: Field required" in _refused(tmp_path, text)


def test_a_course_granting_an_unknown_skill_is_refused_at_the_course(tmp_path: Path) -> None:
    """A reference to a skill the catalog does not define points at the course's line."""
    text = MINOH.replace("grants: [kintone]", "grants: [kintone-pro]")
    message = _refused(tmp_path, text)
    line = _line(text, "kintone-pro")
    assert (
        f"city.yaml:{line}: courses.1.grants.0: course 'M-KIN': grants unknown skill 'kintone-pro'"
    ) in message


def test_a_course_defined_twice_is_refused_at_the_second_definition(tmp_path: Path) -> None:
    """Duplicate course ids: the message names the id and the line of the repeat."""
    text = MINOH.replace("{id: M-KIN,", "{id: M-BASE,")
    message = _refused(tmp_path, text)
    line = _line(text, "kintone研修")
    assert f"city.yaml:{line}: courses.1: course 'M-BASE' is defined twice" in message


def test_levels_out_of_order_are_refused(tmp_path: Path) -> None:
    """Levels must be 1, 2, ... in order: level 2 listed first is refused at its line."""
    first = "  - {level: 1, name: 初級, required: [basics, security]}\n"
    second = "  - {level: 2, name: 上級, required: [basics, security, kintone]}\n"
    text = MINOH.replace(first + second, second + first)
    message = _refused(tmp_path, text)
    line = _line(text, "上級")
    assert (
        f"city.yaml:{line}: levels.0.level: levels must be numbered 1, 2, ... in order" in message
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Several mistakes give several lines, so one round of fixes is enough."""
    text = MINOH.replace("area: ICT}", "area: Cloud}").replace(
        "level: 2, headcount", "level: 7, headcount"
    )
    message = _refused(tmp_path, text)
    assert message.count("unknown area 'Cloud'") == 3
    assert "target 2026/7: unknown level 7" in message


def test_an_offering_period_by_dates_includes_its_first_and_last_day(tmp_path: Path) -> None:
    """`offered: {from, to}`: a course offered on those days and between, not outside."""
    text = MINOH.replace("track: L2}", "track: L2, offered: {from: 2024-04-02, to: 2025-03-31}}")
    course = load_catalog(_write(tmp_path, text)).course_by_id["M-KIN"]
    assert [course.offered_on(date.fromisoformat(d)) for d in DAYS] == [False, False, True, False]
    assert course.offered is not None
    assert course.offered.describe() == "2024-04-02 to 2025-03-31"


def test_an_open_ended_offering_period_limits_one_side(tmp_path: Path) -> None:
    """`offered: {from}` only: every day from then on; `to` only: every day up to it."""
    text = MINOH.replace("track: L2}", "track: L2, offered: {from: 2025-03-31}}")
    course = load_catalog(_write(tmp_path, text)).course_by_id["M-KIN"]
    assert [course.offered_on(date.fromisoformat(d)) for d in DAYS] == [False, False, True, True]
    assert course.offered is not None
    assert course.offered.describe() == "2025-03-31 to any day"


@pytest.mark.parametrize(
    ("offered", "problem"),
    [
        ("{from: 2025-04-01, to: 2024-04-01}", "from 2025-04-01 is after to 2024-04-01"),
        ("{fiscal_years: [2024], to: 2025-03-31}", "either fiscal_years or from/to, not both"),
        ("{fiscal_years: [2024, 2026]}", "must be consecutive and distinct, got [2024, 2026]"),
        ("{}", "needs fiscal_years, from or to"),
        ("{from: someday}", "offered.from: Input should be a valid date"),
        ("{fiscal_year: 2024}", "offered.fiscal_year: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_offering_period_is_refused_at_its_course(
    tmp_path: Path, offered: str, problem: str
) -> None:
    """Reversed, mixed, gapped, empty or mistyped periods: file:line, the course, the reason."""
    text = MINOH.replace("track: L2}", f"track: L2, offered: {offered}}}")
    message = _refused(tmp_path, text)
    line = _line(text, "kintone研修")
    assert f"city.yaml:{line}: courses.1.offered" in message
    assert problem in message


def test_an_unreadable_file_is_refused_with_its_path(tmp_path: Path) -> None:
    """A path that does not exist: CatalogError naming it, not an OSError."""
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(CatalogError, match=r"nowhere\.yaml: cannot read catalog"):
        load_catalog(missing)


def test_parse_catalog_names_the_origin_it_is_given() -> None:
    """Text from elsewhere (an HTTP upload, a test) is named by the caller's origin."""
    with pytest.raises(CatalogError, match=r"^upload#3: invalid catalog"):
        parse_catalog("- just a list\n", "upload#3")


def test_xapi_activities_map_to_their_course(tmp_path: Path) -> None:
    """A course's xAPI activity ids find the course; the default catalog maps each course."""
    text = MINOH.replace(
        "track: L2}", 'track: L2, xapi_activities: ["https://lms.minoh.example/kintone"]}'
    )
    minoh = load_catalog(_write(tmp_path, text))
    assert minoh.course_by_activity["https://lms.minoh.example/kintone"].id == "M-KIN"
    hirakata = load_catalog()
    assert all(len(c.xapi_activities) == 1 for c in hirakata.courses)


def test_one_xapi_activity_named_by_two_courses_is_refused(tmp_path: Path) -> None:
    """An activity of two courses would make its completions ambiguous: refused at the line."""
    iri = 'xapi_activities: ["https://lms.minoh.example/x"]}'
    text = MINOH.replace("track: L1}", f"track: L1, {iri}").replace(
        "track: L2}", f"track: L2, {iri}"
    )
    message = _refused(tmp_path, text)
    assert (
        "courses.1.xapi_activities.0: xAPI activity 'https://lms.minoh.example/x' is named"
        in message
    )
    assert "'M-BASE' and 'M-KIN'" in message


def test_an_xapi_activity_must_be_an_iri(tmp_path: Path) -> None:
    """An activity id without a scheme is refused."""
    text = MINOH.replace("track: L2}", 'track: L2, xapi_activities: ["kintone course"]}')
    assert "xapi_activities.0" in _refused(tmp_path, text)
