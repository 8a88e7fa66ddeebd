"""What one employee holds: skills with their evidence, and certified DX-leader levels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dxtalent_contracts.events import Evidence


@dataclass(frozen=True, slots=True)
class HeldSkill:
    """A skill held, evidenced by its earliest non-voided completion."""

    skill: str
    course_id: str
    acquired_on: dt.date
    evidence_fact_id: str


@dataclass(frozen=True, slots=True)
class CertifiedLevel:
    """A certified level, the date its rule first held, and the completions that date it."""

    level: int
    certified_on: dt.date
    fiscal_year: int
    department_code: str | None
    evidence: tuple[Evidence, ...]
    via_equivalence: bool = False


@dataclass(frozen=True, slots=True)
class CertificationState:
    """One employee's skills (by skill code) and levels (by level number).

    Immutable: the mappings given are copied into read-only views, ordered by key, so two
    states with the same content compare (and print) the same.
    """

    employee_id: str
    skills: Mapping[str, HeldSkill]
    levels: Mapping[int, CertifiedLevel]

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", MappingProxyType(dict(sorted(self.skills.items()))))
        object.__setattr__(self, "levels", MappingProxyType(dict(sorted(self.levels.items()))))

    @classmethod
    def empty(cls, employee_id: str) -> CertificationState:
        """No skill, no level: the state before any fact."""
        return cls(employee_id, {}, {})

    @property
    def highest_level(self) -> int:
        """The highest certified level, 0 when none is."""
        return max(self.levels, default=0)

    @property
    def skill_codes(self) -> frozenset[str]:
        """The codes of the skills held."""
        return frozenset(self.skills)
