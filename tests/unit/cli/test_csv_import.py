"""Completion files for `dxtalent publish`: CSV rows as CourseCompleted facts, JSON lines as bytes."""

from __future__ import annotations

import datetime as dt

from dxtalent.csv_import import (
    RowError,
    parse_completions_csv,
    read_json_lines,
    row_event_id,
)
from dxtalent_contracts.inbound import CourseCompleted
from dxtalent_contracts.registry import parse_inbound

SOURCE = "urn:hirakata:lms"
BOM = "\ufeff"


def test_an_excel_csv_with_a_bom_gives_completion_events() -> None:
    """UTF-8 with BOM and CRLF, as Excel saves it: each row a CourseCompleted for the employee."""
    text = BOM + "employee_id,course_id,completed_on\r\nE000123,DX-101,2025-06-12\r\n"
    result = parse_completions_csv(text, SOURCE)
    assert result.errors == []
    [event] = result.events
    assert event.data == CourseCompleted(
        employee_id="E000123", course_id="DX-101", completed_on=dt.date(2025, 6, 12)
    )
    assert (event.source, event.subject, event.type) == (
        SOURCE,
        "E000123",
        "dxtalent.lms.CourseCompleted.v1",
    )
    assert event.time is not None
    assert event.time.utcoffset() == dt.timedelta(hours=9)
    assert parse_inbound(event.to_json_bytes()) == event


def test_a_bad_row_is_reported_with_its_row_number_and_the_others_import() -> None:
    """An impossible date on line 3 is reported as row 3; rows 2 and 4 still import."""
    text = (
        "employee_id,course_id,completed_on\n"
        "E000001,DX-101,2025-06-12\n"
        "E000002,DX-101,2025-02-30\n"
        "E000003,DX-101,2025-06-13\n"
    )
    result = parse_completions_csv(text, SOURCE)
    assert [e.data.employee_id for e in result.events] == ["E000001", "E000003"]
    [error] = result.errors
    assert error.row == 3
    assert "completed_on '2025-02-30' is not a calendar date" in error.reason


def test_each_kind_of_bad_row_names_its_problem() -> None:
    """Bad id, unparsable or implausible date, missing values; a row that reads well (even with
    an unknown course, which publish's check rejects) keeps its line number."""
    text = (
        "employee_id,course_id,completed_on\n"
        "E 000001,DX-101,2025-06-12\n"
        "E000002,DX-101,12 June 2025\n"
        "E000003,DX-101,1899-01-01\n"
        "E000004,DX-101\n"
        "E000005,DX-999,2025-06-12\n"
    )
    result = parse_completions_csv(text, SOURCE)
    errors = result.errors
    assert [(e.row, e.reason.split(":")[0].split(" ")[0]) for e in errors] == [
        (2, "employee_id"),
        (3, "completed_on"),
        (4, "completed_on"),
        (5, "2"),
    ]
    assert "pattern" in errors[0].reason
    assert "outside 2000-01-01" in errors[2].reason
    assert "2 values for 3 columns" in errors[3].reason
    [(row, event)] = result.numbered
    assert (row, event.data.course_id) == (6, "DX-999")


def test_importing_the_same_file_twice_gives_the_same_ids() -> None:
    """Ids are a uuid5 of the row's content: re-importing is idempotent, other content differs."""
    text = (
        "employee_id,course_id,completed_on\nE000001,DX-101,2025-06-12\nE000001,DX-101,2025-06-13\n"
    )
    first = [e.id for e in parse_completions_csv(text, SOURCE).events]
    again = [e.id for e in parse_completions_csv(BOM + text.replace("\n", "\r\n"), SOURCE).events]
    assert first == again
    assert len(set(first)) == 2
    assert first[0] == row_event_id(SOURCE, "E000001", "DX-101", dt.date(2025, 6, 12))


def test_given_event_ids_and_sources_are_kept() -> None:
    """Optional event_id and source columns override the derived id and the default source."""
    text = (
        "employee_id,course_id,completed_on,event_id,source\n"
        "E000001,DX-101,2025-06-12,lms-42,urn:hirakata:elearning\n"
        "E000002,DX-101,2025/6/1,,\n"
    )
    first, second = parse_completions_csv(text, SOURCE).events
    assert (first.id, first.source) == ("lms-42", "urn:hirakata:elearning")
    assert second.source == SOURCE
    assert second.data.completed_on == dt.date(2025, 6, 1)


def test_a_wrong_header_is_one_error_on_row_one() -> None:
    """Missing or unknown columns stop the import with the expected header spelled out."""
    result = parse_completions_csv(
        "employee,course_id,completed_on,grade\nE1,DX-101,2025-06-12\n", SOURCE
    )
    assert result.events == []
    [error] = result.errors
    assert error.row == 1
    assert "missing column(s) employee_id" in error.reason
    assert "unknown column(s) employee, grade" in error.reason
    assert "employee_id,course_id,completed_on[,event_id][,source]" in error.reason
    assert parse_completions_csv("", SOURCE).errors[0] == RowError(
        1, "the file has no header; expected employee_id,course_id,completed_on[,event_id][,source]"
    )


def test_blank_rows_are_skipped_and_row_numbers_stay_file_lines() -> None:
    """Empty lines and Excel's trailing ',,' rows are ignored without shifting row numbers."""
    text = "employee_id,course_id,completed_on\n\n,,\nE000001,DX-101,2025-13-01\n"
    [error] = parse_completions_csv(text, SOURCE).errors
    assert error.row == 4


def test_json_lines_are_split_into_raw_messages() -> None:
    """One CloudEvent per line, blank lines and a BOM skipped, bytes left for the parser."""
    text = BOM + '{"a": 1}\n\n  {"b": 2}  \r\n\n'
    assert read_json_lines(text) == [b'{"a": 1}', b'{"b": 2}']
    assert read_json_lines("\n \n") == []
