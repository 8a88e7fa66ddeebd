"""The handler's hot paths, rewritten for CPU per fact (docs/decisions/0265), against the
plain code they replaced (kept here as the reference): the same values for any input
(hypothesis)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_certification.codec import (
    facts_and_doc_from_json,
    facts_from_json,
    facts_to_json,
    facts_to_json_after,
)
from dxtalent_certification.domain.corrections import (
    SentEvent,
    SentLedger,
    key_of,
    mark_with_data,
    sent_data,
)
from dxtalent_certification.domain.decide import DomainChange, decide
from dxtalent_certification.domain.facts import Departure, EmployeeFacts, EmployeeRecord, Fact
from dxtalent_certification.domain.state import CertificationState, HeldSkill
from dxtalent_certification.memberships import member_of, row_changes
from dxtalent_certification.projection import EmployeeRow
from dxtalent_contracts.events import LevelCertified, LevelRevoked, SkillAcquired, SkillRevoked
from dxtalent_contracts.fiscal import BEGINNING
from dxtalent_contracts.memberships import Member
from tests.unit.certification.test_properties import CATALOG, EMPLOYEE, employee_facts
from tests.unit.contracts.test_memberships import _walked

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


def as_stored(text: str) -> str:
    """`text` as `jsonb::text` gives it back: keys by length then bytes, `", "` and `": "`."""

    def order(value: Any) -> Any:
        if isinstance(value, dict):
            keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
            return {k: order(value[k]) for k in keys}
        if isinstance(value, list):
            return [order(v) for v in value]
        return value

    return json.dumps(order(json.loads(text)), ensure_ascii=False)


def same_value(a: str, b: str) -> bool:
    """Equal as JSON values, keys in any order (as `jsonb` stores them)."""
    return bool(json.loads(a) == json.loads(b))


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_facts_written_after_a_read_are_the_whole_document(
    facts: list[Fact], data: st.DataObject
) -> None:
    """A row read (as stored), then written with more facts: `facts_to_json_after` is the
    same JSON value as `facts_to_json` of all of them, and reads back as them. (The facts of
    `employee_facts` have distinct ids, so the order of each list is fixed.)"""
    split = data.draw(st.integers(0, len(facts)))
    before = EmployeeFacts.of(EMPLOYEE, facts[:split])
    read, doc = facts_and_doc_from_json(as_stored(facts_to_json(before)))
    assert read == before
    after = read
    for fact in data.draw(st.permutations(facts[split:])):
        after = after.with_fact(fact)
    written = facts_to_json_after(after, read, doc)
    assert same_value(written, facts_to_json(after))
    assert facts_from_json(written) == after


@EXAMPLES
@given(facts=employee_facts())
def test_facts_written_over_another_document_are_encoded_whole(facts: list[Fact]) -> None:
    """A document that is not the facts' before (another employee's, one fact short) is not
    trusted: the facts are encoded whole."""
    known = EmployeeFacts.of(EMPLOYEE, facts)
    other = EmployeeFacts("E-other")
    _, doc = facts_and_doc_from_json(facts_to_json(other))
    assert facts_to_json_after(known, known, doc) == facts_to_json(known)
    if facts:
        short = EmployeeFacts.of(EMPLOYEE, facts[1:])
        _, doc = facts_and_doc_from_json(facts_to_json(short))
        assert facts_to_json_after(known, known, doc) == facts_to_json(known)


def reference_mark_with_data(
    changes: Sequence[DomainChange], ids: Sequence[str], ledger: SentLedger
) -> tuple[list[tuple[str, DomainChange]], list[dict[str, Any]], SentLedger]:
    """`corrections.mark_with_data` before decision 0265."""
    entries = dict(ledger.entries)
    kept: list[tuple[str, DomainChange]] = []
    datas: list[dict[str, Any]] = []
    for event_id, change in zip(ids, changes, strict=True):
        key = key_of(change)
        if isinstance(change, LevelRevoked | SkillRevoked):
            entries.pop(key, None)
            kept.append((event_id, change))
            datas.append(change.model_dump(mode="json"))
            continue
        data = change.model_dump(mode="json", exclude={"supersedes"})
        last = entries.get(key)
        if last is not None and last.data == data:
            continue
        supersedes = last.event_id if last is not None else None
        kept.append((event_id, change.model_copy(update={"supersedes": supersedes})))
        datas.append({**data, "supersedes": supersedes})
        entries[key] = SentEvent(event_id, data)
    return kept, datas, SentLedger(entries) if kept else ledger


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_mark_with_data_is_the_reference(facts: list[Fact], data: st.DataObject) -> None:
    """The same changes, data (keys in order), ledger, and ledger identity when nothing is
    sent; `sent_data` is the dump without `supersedes`, keys in order. Some changes come
    with a `supersedes` already set, which marking replaces."""
    known, state, ledger = (
        EmployeeFacts(EMPLOYEE),
        CertificationState.empty(EMPLOYEE),
        SentLedger.empty(),
    )
    for fact in data.draw(st.permutations(facts)):
        known, state, changes = decide(CATALOG, known, state, fact)
        stale: bool = data.draw(st.booleans())
        if changes and stale:
            changes = [
                c.model_copy(update={"supersedes": "stale"})
                if isinstance(c, LevelCertified | SkillAcquired)
                else c
                for c in changes
            ]
        ids = [f"{fact.fact_id}/{i}" for i in range(len(changes))]
        got = mark_with_data(changes, ids, ledger)
        expected = reference_mark_with_data(changes, ids, ledger)
        assert got == expected
        assert [list(d) for d in got[1]] == [list(d) for d in expected[1]]
        assert (got[2] is ledger) is (expected[2] is ledger)
        for change in changes:
            reference = change.model_dump(mode="json", exclude={"supersedes"})
            assert list(sent_data(change).items()) == list(reference.items())
        ledger = got[2]


@EXAMPLES
@given(
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=4),
    st.dictionaries(st.integers(0, 9), st.text(max_size=2), max_size=4),
)
def test_a_state_keeps_its_mappings_ordered_by_key(
    skills: dict[str, Any], levels: dict[int, Any]
) -> None:
    """The mappings given are copied (never shared with the caller), read-only, by key."""
    state = CertificationState("E", skills, levels)
    assert list(state.skills.items()) == sorted(skills.items())
    assert list(state.levels.items()) == sorted(levels.items())
    skills["not-drawn"] = 1
    assert "not-drawn" not in state.skills
    with pytest.raises(TypeError):
        state.levels[0] = "x"  # type: ignore[index]


@st.composite
def written_rows(draw: st.DrawFn) -> tuple[EmployeeRow | None, EmployeeRow]:
    """A row before (or none) and after a write: the same facts objects with other skills (a
    completion), the same state (a nomination), or another row altogether."""
    after = draw(rows())
    match draw(st.integers(0, 3)):
        case 0:
            return None, after
        case 1:
            skills = draw(st.dictionaries(st.sampled_from(["s1", "s2", "s4"]), days, max_size=3))
            held = {s: HeldSkill(s, "C", on, f"ev-{s}") for s, on in skills.items()}
            before = EmployeeRow(after.facts, CertificationState("E1", held, {}), after.sent)
            return before, after
        case 2:
            return EmployeeRow(after.facts, after.state, after.sent), after
        case _:
            return draw(rows()), after


@EXAMPLES
@given(st.lists(written_rows(), max_size=4))
def test_row_changes_are_the_walks_of_the_reference_members(
    written: list[tuple[EmployeeRow | None, EmployeeRow]],
) -> None:
    expected: Counter[tuple[Any, ...]] = Counter()
    for before, after in written:
        expected.update(_walked(reference_member_of(after)))
        expected.subtract(_walked(reference_member_of(before)))
    got = row_changes(written)
    assert {k: n for k, n in got.items() if n} == {k: n for k, n in expected.items() if n}
