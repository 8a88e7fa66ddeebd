"""Order independence: the final state depends only on the set of facts (docs/architecture.md,
4); each level is judged with the facts about its own day."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_certification.domain.corrections import SentLedger, mark
from dxtalent_certification.domain.decide import decide, evolve
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import (
    Completion,
    Departure,
    EmployeeFacts,
    EmployeeRecord,
    Fact,
    Nomination,
    Void,
)
from dxtalent_certification.domain.state import CertificationState
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.fiscal import fiscal_year_start
from tests.unit.certification.builders import replay

CATALOG = load_catalog()
EMPLOYEE = "E000123"
COURSES = [c.id for c in CATALOG.courses]
DEPARTMENTS = ["D-A", "D-B", "D-C"]
DUTY = sorted({s for rule in CATALOG.levels for s in rule.duty})
#: A few shared dates make same-day ties (and their fact-id tie-breaks) common.
SHARED_DATES = [
    dt.date(2024, 4, 1),
    dt.date(2025, 3, 31),  # the last day of FY2024, the period the FY2024 courses ran
    dt.date(2025, 6, 1),
    dt.date(2026, 3, 31),
    dt.date(2026, 4, 1),
]
dates = st.one_of(
    st.sampled_from(SHARED_DATES),
    st.dates(min_value=dt.date(2023, 4, 1), max_value=dt.date(2028, 3, 31)),
)
fiscal_years = st.integers(min_value=2023, max_value=2027)
EXAMPLES = settings(max_examples=200, deadline=None)


@st.composite
def completions(draw: st.DrawFn) -> list[Completion]:
    """Most catalog courses (so levels are often reached), some twice, some unknown."""
    skipped = draw(st.frozensets(st.sampled_from(COURSES), max_size=4))
    courses = [c for c in COURSES if c not in skipped]
    courses += draw(st.lists(st.sampled_from([*COURSES, "NOT-IN-CATALOG"]), max_size=5))
    return [Completion(f"cmp-{i:02d}", EMPLOYEE, c, draw(dates)) for i, c in enumerate(courses)]


@st.composite
def employee_facts(draw: st.DrawFn) -> list[Fact]:
    """One employee's facts: completions, voids, nominations, records, departures."""
    done = draw(completions())
    targets = st.one_of(st.sampled_from([c.fact_id for c in done]), st.just("unknown-id"))
    voided = draw(st.lists(targets, max_size=4))
    facts: list[Fact] = [*done]
    facts += [Void(f"void-{i}", EMPLOYEE, "DX-101", t, "error") for i, t in enumerate(voided)]
    for i in range(draw(st.integers(0, 3))):
        dept = draw(st.sampled_from(DEPARTMENTS))
        facts.append(Nomination(f"nom-{i}", EMPLOYEE, draw(fiscal_years), dept))
    facts += draw(records())
    for i in range(draw(st.integers(0, 2))):  # a second departure fact: the earliest counts
        facts.append(Departure(f"left-{i}", EMPLOYEE, draw(dates)))
    return facts


@st.composite
def records(draw: st.DrawFn) -> list[EmployeeRecord]:
    """Effective-dated records whose duty skills change over time (some on the same day)."""
    out = []
    for i in range(draw(st.integers(0, 4))):
        duty = draw(st.frozensets(st.sampled_from(DUTY)))
        dept = draw(st.sampled_from(DEPARTMENTS))
        cats = frozenset({"dx-leader"})
        out.append(EmployeeRecord(f"rec-{i}", EMPLOYEE, dept, cats, duty, draw(dates)))
    return out


def evaluated(facts: list[Fact]) -> CertificationState:
    """The state of the set of facts."""
    return evaluate(CATALOG, EmployeeFacts.of(EMPLOYEE, facts))


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_any_arrival_order_and_any_duplication_give_the_same_state(
    facts: list[Fact], data: st.DataObject
) -> None:
    """Deciding a permutation of the facts, with repeats, ends in evaluate(set of facts)."""
    repeats = data.draw(st.lists(st.sampled_from(facts), max_size=6))
    arrival = data.draw(st.permutations([*facts, *repeats]))
    _, state, _ = replay(CATALOG, arrival, EMPLOYEE)
    assert state == evaluated(facts)


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_folding_the_emitted_changes_rebuilds_the_state(
    facts: list[Fact], data: st.DataObject
) -> None:
    """evolve over every emitted change, from empty, equals evaluate after every fact."""
    arrival = data.draw(st.permutations(facts))
    folded = CertificationState.empty(EMPLOYEE)
    for i, step in enumerate(replay(CATALOG, arrival, EMPLOYEE)[2]):
        for change in step:
            folded = evolve(folded, change)
            assert list(folded.levels) == list(range(1, len(folded.levels) + 1))
        assert folded == evaluated(arrival[: i + 1])


@EXAMPLES
@given(facts=employee_facts())
def test_levels_are_contiguous_dated_in_order_and_never_before_the_floor(
    facts: list[Fact],
) -> None:
    """Levels 1..k, each dated on or after the one below and the first nomination's April 1."""
    known = EmployeeFacts.of(EMPLOYEE, facts)
    state = evaluate(CATALOG, known)
    assert list(state.levels) == list(range(1, len(state.levels) + 1))
    dates_in_order = [level.certified_on for level in state.levels.values()]
    assert dates_in_order == sorted(dates_in_order)
    first_year = known.first_nomination_year()
    if state.levels:
        assert first_year is not None
        assert dates_in_order[0] >= fiscal_year_start(first_year)


def _dated(state: CertificationState) -> dict[int, tuple[object, ...]]:
    """Each level's date, evidence and path (its department aside)."""
    return {n: (lv.certified_on, lv.evidence, lv.via_equivalence) for n, lv in state.levels.items()}


@EXAMPLES
@given(facts=employee_facts())
def test_no_level_is_certified_on_or_after_left_on(facts: list[Fact]) -> None:
    """Every certified_on lies before the (earliest) left_on."""
    known = EmployeeFacts.of(EMPLOYEE, facts)
    left_on = known.left_on()
    state = evaluate(CATALOG, known)
    if left_on is not None:
        assert all(level.certified_on < left_on for level in state.levels.values())


@EXAMPLES
@given(facts=employee_facts())
def test_a_level_never_needs_a_record_effective_after_its_date(facts: list[Fact]) -> None:
    """Dropping the records that take effect after a level's date keeps it, dated the same."""
    state = evaluate(CATALOG, EmployeeFacts.of(EMPLOYEE, facts))
    for n, level in state.levels.items():
        earlier = [
            f
            for f in facts
            if not (isinstance(f, EmployeeRecord) and f.effective_date > level.certified_on)
        ]
        without = _dated(evaluated(earlier))
        assert {k: v for k, v in without.items() if k <= n} == {
            k: v for k, v in _dated(state).items() if k <= n
        }


@EXAMPLES
@given(facts=employee_facts(), later=records())
def test_a_record_taking_effect_later_revokes_no_level(
    facts: list[Fact], later: list[EmployeeRecord]
) -> None:
    """Records effective after the highest level's date leave every level as it was."""
    state = evaluated(facts)
    if not state.levels:
        return
    last = max(level.certified_on for level in state.levels.values())
    added = [
        dataclasses.replace(r, fact_id=f"late-{i}", effective_date=last + dt.timedelta(days=1))
        for i, r in enumerate(later)
    ]
    after = _dated(evaluated([*facts, *added]))
    assert {n: v for n, v in after.items() if n in state.levels} == _dated(state)


@EXAMPLES
@given(facts=employee_facts(), data=st.data())
def test_an_unchanged_state_and_ledger_are_the_very_objects_given(
    facts: list[Fact], data: st.DataObject
) -> None:
    """Fact by fact: `knows` says what `with_fact` would leave unchanged; `decide` returns the
    previous state itself exactly when it emits nothing (and an equal one then), and `mark`
    the ledger itself exactly when it sends nothing. The handler and the projection rely on
    these identities to skip encoding and rewriting what did not change."""
    arrival = data.draw(st.permutations([*facts, *data.draw(st.lists(st.sampled_from(facts)))]))
    known, state, ledger = (
        EmployeeFacts(EMPLOYEE),
        CertificationState.empty(EMPLOYEE),
        SentLedger({}),
    )
    for n, fact in enumerate(arrival):
        assert known.knows(fact) is (known.with_fact(fact) is known)
        known, new_state, changes = decide(CATALOG, known, state, fact)
        assert (new_state is state) is (not changes)
        assert new_state == evaluate(CATALOG, known)
        ids = [f"ev-{n}-{i}" for i in range(len(changes))]
        sent, new_ledger = mark(changes, ids, ledger)
        assert (new_ledger is ledger) is (not sent)
        state, ledger = new_state, new_ledger
