"""The handler's hot paths, rewritten for CPU per fact (docs/decisions/0265), against the
plain code they replaced (kept here as the reference): the same values for any input
(hypothesis)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_certification.domain.corrections import SentLedger
from dxtalent_certification.domain.facts import Departure, EmployeeFacts, EmployeeRecord, Fact
from dxtalent_certification.domain.state import CertificationState, HeldSkill
from dxtalent_certification.memberships import member_of
from dxtalent_certification.projection import EmployeeRow
from dxtalent_contracts.fiscal import BEGINNING
from dxtalent_contracts.memberships import Member

EXAMPLES = settings(max_examples=300, deadline=None)
DAYS = [BEGINNING, dt.date(2024, 4, 1), dt.date(2024, 10, 1), dt.date(2025, 4, 1)]
days = st.sampled_from(DAYS) | st.dates(dt.date(2023, 1, 1), dt.date(2027, 12, 31))
fact_ids = st.sampled_from(["", "a", "b", "r-1", "r-2"])
categories = st.frozensets(st.sampled_from(["dx-leader", "section-chief", "it", "zz"]), max_size=3)


@st.composite
def rows(draw: st.DrawFn) -> EmployeeRow:
    """A row with records (several on a day, ties broken by fact id, one even at
    `BEGINNING` with the empty id), departures and skills."""
    e = "E1"
    facts: list[Fact] = [
        EmployeeRecord(draw(fact_ids) + str(n), e, "D", draw(categories), frozenset(), draw(days))
        for n in range(draw(st.integers(0, 4)))
    ]
    if draw(st.booleans()):
        facts.append(EmployeeRecord("", e, "D", draw(categories), frozenset(), BEGINNING))
    facts += [Departure(f"d{n}", e, draw(days)) for n in range(draw(st.integers(0, 2)))]
    skills = draw(st.dictionaries(st.sampled_from(["s1", "s2", "s3"]), days, max_size=3))
    held = {s: HeldSkill(s, "C", on, f"ev-{s}") for s, on in skills.items()}
    return EmployeeRow(
        EmployeeFacts.of(e, facts), CertificationState(e, held, {}), SentLedger.empty()
    )


def reference_member_of(row: EmployeeRow | None) -> Member | None:
    """`memberships.member_of` before decision 0265."""
    if row is None:
        return None
    latest: dict[dt.date, tuple[str, frozenset[str]]] = {BEGINNING: ("", frozenset())}
    for r in row.facts.records:
        if r.effective_date not in latest or latest[r.effective_date][0] < r.fact_id:
            latest[r.effective_date] = (r.fact_id, r.categories)
    return Member(
        employee_id=row.employee_id,
        records=tuple(sorted((day, tuple(sorted(c))) for day, (_, c) in latest.items())),
        left_on=row.facts.left_on(),
        skills={code: held.acquired_on for code, held in row.state.skills.items()},
    )


@EXAMPLES
@given(st.none() | rows())
def test_member_of_is_the_reference(row: EmployeeRow | None) -> None:
    assert member_of(row) == reference_member_of(row)
