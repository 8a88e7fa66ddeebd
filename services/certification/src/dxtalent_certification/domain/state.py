"""What one employee holds: skills with their evidence, and certified DX-leader levels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

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
        object.__setattr__(self, "skills", _by_key(self.skills))
        object.__setattr__(self, "levels", _by_key(self.levels))

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


_K = TypeVar("_K", str, int)
_V = TypeVar("_V")


def _by_key(items: Mapping[_K, _V]) -> Mapping[_K, _V]:
    """A read-only copy of `items`, ordered by key (none or one need no sorting: a hot path,
    twice per state built)."""
    return MappingProxyType(dict(sorted(items.items())) if len(items) > 1 else dict(items))
