"""The catalog: every rule of a municipality's plan as data, validated at load.

A catalog file (YAML) names skills, courses and what they grant, DX-leader level rules with
● (required) and ★ (duty) skills, level equivalences, staff-category requirements and yearly
headcount targets, under a policy version. `load_catalog(path)` refuses a malformed file with
the file, the line and the reason (`CatalogError`).

A course may declare the period it ran (`offered`): a completion dated outside it is bad input.
A course may name the xAPI activities (IRIs) of the city's LMS that stand for it
(`xapi_activities`): a statement that completes one of them is a completion of the course.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dxtalent_contracts.fiscal import both_labels, fiscal_year_end, fiscal_year_start
from dxtalent_contracts.types import CalendarDate, Code, FiscalYear, NonEmptyText

REIWA_FIRST_FISCAL_YEAR = 2019
Track = Literal["L1", "L2", "L3", "staff", "FY2024"]
#: An xAPI activity id: an absolute IRI (a scheme, a colon, no spaces), as the LMS sends it.
ActivityIri = Annotated[
    str, Field(pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$", min_length=3, max_length=2000)
]
DEFAULT_CATALOG = "hirakata-2025.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Municipality(_Frozen):
    code: Code
    name: NonEmptyText


class Plan(_Frozen):
    name: NonEmptyText
    first_fiscal_year: FiscalYear
    last_fiscal_year: FiscalYear
    nomination_history_from: FiscalYear


class Policy(_Frozen):
    """Decisions where the plan is silent; each is the city's to change."""

    nomination_required: bool = True
    nomination_floor: bool = True
    duty_skills_required: bool = True


class Area(_Frozen):
    code: Code
    name: NonEmptyText


class Skill(_Frozen):
    code: Code
    name: NonEmptyText
    area: Code
    name_en: NonEmptyText | None = None  # English name, shown in portable credentials


class LevelRule(_Frozen):
    """Skills held at a level: ● `required` (cumulative) and ★ `duty` (when the duties call)."""

    level: Annotated[int, Field(ge=1, le=9)]
    name: NonEmptyText
    required: list[Code]
    duty: list[Code] = Field(default_factory=list)
    # what a portable credential (Open Badges 3.0 Achievement) says of the level
    name_en: NonEmptyText | None = None
    description: NonEmptyText | None = None
    description_en: NonEmptyText | None = None


class Offered(_Frozen):
    """The period a course ran, first and last day included: either `fiscal_years` (one or
    consecutive years, e.g. `{fiscal_years: [2024]}`) or `from` and/or `to` (calendar dates)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    fiscal_years: list[FiscalYear] | None = Field(default=None, min_length=1)
    first: CalendarDate | None = Field(default=None, alias="from")
    last: CalendarDate | None = Field(default=None, alias="to")

    @model_validator(mode="after")
    def _one_consistent_form(self) -> Offered:
        if self.fiscal_years is not None:
            if self.first is not None or self.last is not None:
                raise ValueError("give either fiscal_years or from/to, not both")
            years = sorted(self.fiscal_years)
            if years != list(range(years[0], years[-1] + 1)) or len(set(years)) != len(years):
                raise ValueError(f"fiscal_years must be consecutive and distinct, got {years}")
        elif self.first is None and self.last is None:
            raise ValueError("an offering period needs fiscal_years, from or to")
        elif self.first is not None and self.last is not None and self.first > self.last:
            raise ValueError(f"from {self.first} is after to {self.last}")
        return self

    @property
    def first_day(self) -> dt.date | None:
        """The first day a completion may be dated; None: no lower limit."""
        if self.fiscal_years is not None:
            return fiscal_year_start(min(self.fiscal_years))
        return self.first

    @property
    def last_day(self) -> dt.date | None:
        """The last day a completion may be dated; None: no upper limit."""
        if self.fiscal_years is not None:
            return fiscal_year_end(max(self.fiscal_years))
        return self.last

    def includes(self, day: dt.date) -> bool:
        """Whether `day` lies within the period."""
        first, last = self.first_day, self.last_day
        return (first is None or first <= day) and (last is None or day <= last)

    def describe(self) -> str:
        """The period as a person reads it: 'FY2024 (令和6年度), 2024-04-01 to 2025-03-31'."""
        first, last = self.first_day, self.last_day
        span = f"{first or 'any day'} to {last or 'any day'}"
        if self.fiscal_years is None:
            return span
        years = sorted(self.fiscal_years)
        named = f"FY{years[0]}" if len(years) == 1 else f"FY{years[0]}-FY{years[-1]}"
        if len(years) == 1 and years[0] >= REIWA_FIRST_FISCAL_YEAR:
            named = both_labels(years[0])
        return f"{named}, {span}"


class Course(_Frozen):
    """A course, the skills it grants, and (optionally) the only period in which it ran."""

    id: Code
    name: NonEmptyText
    grants: list[Code] = Field(min_length=1)
    track: Track
    offered: Offered | None = None
    xapi_activities: list[ActivityIri] = Field(default_factory=list)

    def offered_on(self, day: dt.date) -> bool:
        """Whether a completion dated `day` lies within the course's offering period."""
        return self.offered is None or self.offered.includes(day)


class Equivalence(_Frozen):
    """Completing all of `courses` certifies `level` (e.g. the FY2024 level-1 training)."""

    name: NonEmptyText
    level: int
    courses: list[Code] = Field(min_length=1)


class Category(_Frozen):
    """A staff category and the knowledge it requires (plus every skill of `includes_level`)."""

    code: Code
    name: NonEmptyText
    required: list[Code]
    includes_level: int | None = None
    implicit: bool = False


class Target(_Frozen):
    fiscal_year: FiscalYear
    level: int
    headcount: Annotated[int, Field(ge=0)]
    note: str | None = None


Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class CatalogReferenceError(ValueError):
    """Cross-reference problems, each with its location (path in the document)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(msg for _, msg in problems))
        self.problems = problems


def _dupes(section: str, codes: list[str], what: str) -> list[Problem]:
    seen: set[str] = set()
    out: list[Problem] = []
    for i, code in enumerate(codes):
        if code in seen:
            out.append(((section, i), f"{what} {code!r} is defined twice"))
        seen.add(code)
    return out


class Catalog(_Frozen):
    """A municipality's plan as data. Derived look-ups are computed once per catalog."""

    policy_version: NonEmptyText
    municipality: Municipality
    plan: Plan
    policy: Policy = Policy()
    areas: list[Area]
    skills: list[Skill]
    levels: list[LevelRule]
    courses: list[Course]
    equivalences: list[Equivalence] = Field(default_factory=list)
    categories: list[Category]
    targets: list[Target]

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        problems = _reference_problems(self)
        if problems:
            raise CatalogReferenceError(problems)
        return self

    # --- derived look-ups --------------------------------------------------------------------

    @cached_property
    def course_by_id(self) -> dict[str, Course]:
        return {c.id: c for c in self.courses}

    @cached_property
    def course_by_activity(self) -> dict[str, Course]:
        """The course each xAPI activity id stands for."""
        return {iri: c for c in self.courses for iri in c.xapi_activities}

    @cached_property
    def skill_by_code(self) -> dict[str, Skill]:
        return {s.code: s for s in self.skills}

    @cached_property
    def category_by_code(self) -> dict[str, Category]:
        return {c.code: c for c in self.categories}

    @property
    def top_level(self) -> int:
        return len(self.levels)

    def level_rule(self, level: int) -> LevelRule:
        return self.levels[level - 1]

    def skills_added_at(self, level: int) -> frozenset[str]:
        """● skills that `level` requires beyond the level below it."""
        below = set(self.level_rule(level - 1).required) if level > 1 else set()
        return frozenset(self.level_rule(level).required) - below

    def courses_granting(self, skill: str) -> list[Course]:
        return [c for c in self.courses if skill in c.grants]

    def category_requirements(self, code: str) -> frozenset[str]:
        """Every skill a category requires, its level's skill map included."""
        cat = self.category_by_code[code]
        required = set(cat.required)
        if cat.includes_level is not None:
            rule = self.level_rule(cat.includes_level)
            required |= set(rule.required) | set(rule.duty)
        return frozenset(required)

    @cached_property
    def headcount_by_year_level(self) -> dict[tuple[int, int], int]:
        """Each (fiscal year, level)'s headcount target; the first one listed when a year and
        level are listed twice."""
        out: dict[tuple[int, int], int] = {}
        for t in self.targets:
            out.setdefault((t.fiscal_year, t.level), t.headcount)
        return out

    def target(self, fiscal_year: int, level: int) -> int | None:
        return self.headcount_by_year_level.get((fiscal_year, level))

    @property
    def fiscal_years(self) -> list[int]:
        return sorted({t.fiscal_year for t in self.targets})


def _activity_dupes(courses: list[Course]) -> list[Problem]:
    """An xAPI activity named by two courses would make its completions ambiguous."""
    owner: dict[str, str] = {}
    out: list[Problem] = []
    for i, course in enumerate(courses):
        for j, iri in enumerate(course.xapi_activities):
            if iri in owner:
                out.append(
                    (
                        ("courses", i, "xapi_activities", j),
                        f"xAPI activity {iri!r} is named by courses {owner[iri]!r} and "
                        f"{course.id!r}; one activity stands for one course",
                    )
                )
            owner.setdefault(iri, course.id)
    return out


def _reference_problems(cat: Catalog) -> list[Problem]:
    """Every duplicate definition and unresolved reference in a structurally valid catalog."""
    problems = [
        *_dupes("areas", [a.code for a in cat.areas], "area"),
        *_dupes("skills", [s.code for s in cat.skills], "skill"),
        *_dupes("courses", [c.id for c in cat.courses], "course"),
        *_dupes("categories", [c.code for c in cat.categories], "category"),
        *_dupes("levels", [str(r.level) for r in cat.levels], "level"),
        *_activity_dupes(cat.courses),
    ]
    numbers = [r.level for r in cat.levels]
    problems += [
        (("levels", i, "level"), f"levels must be numbered 1, 2, ... in order, got {numbers}")
        for i, n in enumerate(numbers)
        if n != i + 1
    ][:1]
    skills, courses = {s.code for s in cat.skills}, {c.id for c in cat.courses}
    areas = {a.code for a in cat.areas}
    # (location, references, what they must be among, message about one unknown reference)
    refs: list[tuple[Loc, list[str], set[str], str]] = []
    for i, s in enumerate(cat.skills):
        refs.append((("skills", i, "area"), [s.area], areas, f"skill {s.code!r}: unknown area"))
    for i, rule in enumerate(cat.levels):
        for part, codes in (("required", rule.required), ("duty", rule.duty)):
            refs.append((("levels", i, part), codes, skills, f"level {rule.level}: unknown skill"))
    for i, course in enumerate(cat.courses):
        grants = f"course {course.id!r}: grants unknown skill"
        refs.append((("courses", i, "grants"), course.grants, skills, grants))
    for i, eq in enumerate(cat.equivalences):
        refs.append(
            (
                ("equivalences", i, "courses"),
                eq.courses,
                courses,
                f"equivalence {eq.name!r}: unknown course",
            )
        )
    for i, c in enumerate(cat.categories):
        refs.append(
            (
                ("categories", i, "required"),
                c.required,
                skills,
                f"category {c.code!r}: unknown skill",
            )
        )
    for loc, codes, known, message in refs:
        problems += [
            ((*loc, j), f"{message} {ref!r}") for j, ref in enumerate(codes) if ref not in known
        ]
    levels: list[tuple[Loc, int | None, str]] = [
        *(
            (("equivalences", i, "level"), e.level, f"equivalence {e.name!r}")
            for i, e in enumerate(cat.equivalences)
        ),
        *(
            (("categories", i, "includes_level"), c.includes_level, f"category {c.code!r}")
            for i, c in enumerate(cat.categories)
        ),
        *(
            (("targets", i, "level"), t.level, f"target {t.fiscal_year}/{t.level}")
            for i, t in enumerate(cat.targets)
        ),
    ]
    problems += [
        (loc, f"{what}: unknown level {n}")
        for loc, n, what in levels
        if n is not None and n not in numbers
    ]
    return problems


class CatalogError(ValueError):
    """A catalog file that cannot be used: names the file, the location and the reason."""


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        if node is None:
            break
    return None if node is None else node.start_mark.line + 1


def parse_catalog(text: str, origin: str) -> Catalog:
    """Validate catalog YAML text; `origin` names where it came from in error messages."""
    try:
        doc: Any = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{origin}: not valid YAML: {exc}") from exc
    try:
        return Catalog.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for loc, msg in _located_problems(exc):
            line = _line_of(root, loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            at = f"{origin}:{line}" if line else origin
            lines.append(f"{at}: {where}: {msg}")
        raise CatalogError(f"{origin}: invalid catalog\n" + "\n".join(lines)) from exc


def _located_problems(exc: ValidationError) -> list[Problem]:
    """Validation errors with their locations; cross-reference problems keep their own."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, CatalogReferenceError):
            out += cause.problems
        else:
            out.append((tuple(err["loc"]), err["msg"]))
    return out


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load a catalog file, or the shipped Hirakata default when `path` is None."""
    if path is None:
        text = (
            resources.files("dxtalent_contracts.catalogs")
            .joinpath(DEFAULT_CATALOG)
            .read_text("utf-8")
        )
        return parse_catalog(text, f"<default catalog {DEFAULT_CATALOG}>")
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise CatalogError(f"{p}: cannot read catalog: {exc.strerror}") from exc
    return parse_catalog(text, str(p))
