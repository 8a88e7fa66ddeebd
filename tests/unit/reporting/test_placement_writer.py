"""The handler's count changes are those of the per-employee definitions (hypothesis).

`PlacementWriter.add` sweeps an employee's rows once per timeline instead of assembling a
`Standing` and walking it day by day; these tests hold it to the definitions it replaced:
`changes_of` of the `Standing` that `assemble_standings` makes of the rows (`placement_steps`),
and `placement_changes` / `membership_changes` of the rows before and after (`add`). The rows
are any the read statement can return (one per table's primary key), and for the sweep also
some it cannot (several departures, a level twice): it must agree with the definitions on those
too. (`add` compares the rows before and after as sets, which only rows unique per key are.)
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_contracts.memberships import Member, membership_changes
from dxtalent_reporting.domain.placements import Change, changes_of, placement_changes
from dxtalent_reporting.domain.progress import Standing
from dxtalent_reporting.domain.standings import assemble_standings
from dxtalent_reporting.placements import (
    PendingCounts,
    PlacementWriter,
    Row,
    placement_steps,
    rows_after,
)

FIRST, LAST = dt.date(2022, 1, 1), dt.date(2028, 6, 30)
days = st.dates(FIRST, LAST)
departments = st.sampled_from(["D-A", "D-B", "D-C"])
categories = st.lists(st.sampled_from(["section-chief", "it-department", "other"]), max_size=3)
rows_of_one: st.SearchStrategy[list[Row]] = st.lists(
    st.one_of(
        st.tuples(st.just("r"), days, departments, st.none(), categories.map(tuple)),
        st.tuples(st.just("d"), days, st.none(), st.none(), st.none()),
        st.tuples(st.just("l"), days, st.none() | departments, st.integers(1, 4), st.none()),
        st.tuples(st.just("n"), st.none(), departments, st.integers(2022, 2027), st.none()),
        st.tuples(
            st.just("s"), st.none() | days, st.sampled_from(["sec", "data"]), st.none(), st.none()
        ),
    ),
    max_size=12,
)


#: each table's primary key after the employee, as positions in a `Row` (written out from the
#: migrations, not from `placements`)
PRIMARY_KEY = {"r": (1,), "d": (), "n": (3, 2), "l": (3,), "s": (2,)}


unique_rows = rows_of_one.map(
    lambda rows: list({(r[0], *(r[i] for i in PRIMARY_KEY[r[0]])): r for r in rows}.values())
)


def standing_of(rows: Sequence[Row]) -> Standing | None:
    """The employee's `Standing` as the handler assembled it before the sweep."""
    found = assemble_standings(
        [("E", r[1], r[2]) for r in rows if r[0] == "r"],
        [("E", r[1]) for r in rows if r[0] == "d"],
        [("E", r[3], r[1], r[2]) for r in rows if r[0] == "l"],
        [("E", r[3], r[2]) for r in rows if r[0] == "n"],
    )
    return found[0] if found else None


def member_of(rows: Sequence[Row]) -> Member:
    """The employee as the category counts read them (unchanged by the sweep)."""
    return Member(
        employee_id="E",
        records=tuple(sorted((r[1], tuple(r[4] or ())) for r in rows if r[0] == "r")),
        left_on=next((r[1] for r in rows if r[0] == "d"), None),
        skills={r[2]: r[1] for r in rows if r[0] == "s" and r[1] is not None},
    )


@settings(max_examples=500, deadline=None)
@given(rows_of_one)
def test_the_sweep_gives_the_changes_of_the_assembled_standing(rows: list[Row]) -> None:
    swept: Counter[Change] = Counter()
    for change, n in placement_steps(rows):
        swept[change] += n
    assert swept == changes_of(standing_of(rows))


@settings(max_examples=500, deadline=None)
@given(unique_rows, unique_rows)
def test_add_sums_what_the_definitions_give_for_before_and_after(
    before: list[Row], after: list[Row]
) -> None:
    pending = PendingCounts()
    PlacementWriter("s").add(pending, "E", before, after)
    members: Counter[tuple[dt.date, str, str]] = Counter()
    for (day, names, skills), n in membership_changes(member_of(before), member_of(after)).items():
        members[(day, " ".join(names), " ".join(skills))] += n
    assert {k: n for k, n in pending.placed.items() if n} == placement_changes(
        standing_of(before), standing_of(after)
    )
    assert {k: n for k, n in pending.members.items() if n} == {
        k: n for k, n in members.items() if n
    }


def read_after(before: list[Row], written: list[tuple[Row, bool]]) -> Counter[Row]:
    """What reading the employee's rows after the writes returns: each write replaces the
    row of its primary key; a tombstone (revoked) is kept in the table but not read."""
    table = {(r[0], *(r[i] for i in PRIMARY_KEY[r[0]])): (r, True) for r in before}
    for row, kept in written:
        table[(row[0], *(row[i] for i in PRIMARY_KEY[row[0]]))] = (row, kept)
    return Counter(row for row, kept in table.values() if kept)


@settings(max_examples=500, deadline=None)
@given(
    unique_rows, st.lists(st.tuples(rows_of_one.filter(bool).map(lambda r: r[0]), st.booleans()))
)
def test_the_rows_after_a_segment_are_those_before_with_its_writes_put_in(
    before: list[Row], written: list[tuple[Row, bool]]
) -> None:
    kept = [(row, flag or row[0] not in "ls") for row, flag in written]  # only those tombstone
    assert Counter(rows_after(before, kept)) == read_after(before, kept)


def test_a_write_replaces_only_the_row_of_its_own_key() -> None:
    day, other = dt.date(2026, 4, 1), dt.date(2026, 10, 1)
    before: list[Row] = [
        ("r", day, "D-A", None, ()),
        ("r", other, "D-A", None, ()),
        ("n", None, "D-A", 2026, None),
        ("l", day, "D-A", 2, None),
        ("s", day, "sec", None, None),
    ]
    written: list[tuple[Row, bool]] = [
        (("r", day, "D-B", None, ("section-chief",)), True),  # the same day, a newer fact
        (("n", None, "D-B", 2026, None), True),  # another department the same year
        (("l", None, None, 2, None), False),  # level 2 revoked
        (("s", other, "data", None, None), True),
    ]
    assert Counter(rows_after(before, written)) == Counter(
        [
            ("r", day, "D-B", None, ("section-chief",)),
            ("r", other, "D-A", None, ()),
            ("n", None, "D-A", 2026, None),
            ("n", None, "D-B", 2026, None),
            ("s", day, "sec", None, None),
            ("s", other, "data", None, None),
        ]
    )
