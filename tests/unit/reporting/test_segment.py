"""`segment.Table`: rounds keep each key's rows in stream order, and lists travel as slices."""

from __future__ import annotations

from typing import Any

from dxtalent_reporting.readmodel import ROWS_OF, SUBJECTS
from dxtalent_reporting.segment import RowsOf, SegmentRows, Table, rows_of

UPSERT = Table("t", "t", (("k", "text"), ("v", "int")), "ON CONFLICT (k) DO UPDATE ...", key=1)
LISTS = Table(
    "t", "t", (("k", "text"), ("names", "text[]"), ("n", "int")), "ON CONFLICT DO NOTHING"
)


def test_a_key_that_comes_again_goes_to_the_next_round_in_stream_order() -> None:
    rows = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1), ("b", 2)]
    assert UPSERT.rounds(rows) == [[("a", 1), ("b", 1), ("c", 1)], [("a", 2), ("b", 2)], [("a", 3)]]
    assert UPSERT.rounds([]) == []


def test_a_do_nothing_table_takes_every_row_in_one_round() -> None:
    rows = [("a", ("x",), 1), ("a", ("x",), 1)]
    assert LISTS.rounds(rows) == [rows]


def test_a_list_per_row_is_sent_flat_with_each_rows_bounds() -> None:
    sql, after = LISTS.insert('"s"', 2)
    assert after == 7  # k, names (flat, from, to), n
    assert "($3::text[])[u.names_lo:u.names_hi]" in sql
    assert "unnest($2::text[], $4::int[], $5::int[], $6::int[])" in sql
    rows = [("a", ("x", "y"), 1), ("b", (), 2), ("c", ("z",), 3)]
    assert LISTS.arguments(rows) == [
        ["a", "b", "c"],
        ["x", "y", "z"],
        [1, 3, 3],
        [2, 2, 3],
        [1, 2, 3],
    ]


def test_rows_whose_keys_are_all_new_are_one_round_in_stream_order() -> None:
    rows = [("c", 1), ("a", 1), ("b", 1)]
    assert UPSERT.rounds(rows) == [rows]


def test_an_event_type_takes_its_own_writer_else_its_nearest_base_classs() -> None:
    class Base: ...

    class Own(Base): ...

    class Derived(Own): ...

    def base(rows: SegmentRows, event: object, sequence: int) -> None: ...

    def own(rows: SegmentRows, event: object, sequence: int) -> None: ...

    writers: dict[type[Any], RowsOf] = {Base: base, Own: own}
    assert rows_of(writers, Own) is own
    assert rows_of(writers, Derived) is own
    assert rows_of(writers, Base) is base
    assert rows_of(writers, int) is None


def test_every_subject_the_read_model_reads_has_a_writer() -> None:
    """The consumer's filter (`SUBJECTS`) and what `add_rows` writes name the same types."""
    assert {cls.nats_subject for cls in ROWS_OF} == SUBJECTS
