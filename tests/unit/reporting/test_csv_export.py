"""The progress CSV for Excel: BOM, CRLF, Japanese header, empty cells where nothing is set."""

from __future__ import annotations

import csv
import datetime as dt
import io

from dxtalent_contracts.catalog import load_catalog
from dxtalent_reporting.csv_export import HEADER, csv_filename, progress_csv
from dxtalent_reporting.domain.progress import Standing, target_progress
from dxtalent_reporting.domain.standings import assemble_standings

CATALOG = load_catalog()


def standing(employee_id: str, level: int, department: str = "D-A") -> Standing:
    """An employee certified at levels 1..`level` on 2025-06-01."""
    return Standing(
        employee_id=employee_id,
        records=((dt.date(2023, 4, 1), department),),
        levels={n: dt.date(2025, 6, 1) for n in range(1, level + 1)},
    )


def rows_of(body: bytes) -> list[list[str]]:
    """The CSV parsed back (after its BOM)."""
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_csv_starts_with_bom_uses_crlf_and_japanese_header() -> None:
    """Excel needs the BOM to read UTF-8; every line ends in CRLF."""
    body = progress_csv(target_progress(CATALOG, 2025, [standing("E1", 1)]))
    assert body.startswith(b"\xef\xbb\xbf")
    text = body[3:].decode("utf-8")
    assert text.endswith("\r\n")
    assert text.count("\r\n") == 1 + CATALOG.top_level
    assert "\n" not in text.replace("\r\n", "")
    assert rows_of(body)[0] == list(HEADER)
    assert HEADER[:8] == (
        "年度",
        "年度(和暦)",
        "基準日",
        "レベル",
        "目標人数",
        "到達人数",
        "うち当該レベル",
        "達成率(%)",
    )


def test_rows_carry_the_numbers_and_leave_undefined_percent_empty() -> None:
    """FY2025 targets 100/20/0: level 3's percent is empty, not 0."""
    standings = [standing("E1", 1), standing("E2", 2), standing("E3", 3)]
    rows = rows_of(progress_csv(target_progress(CATALOG, 2025, standings)))
    assert rows[1:] == [
        ["2025", "令和7年度", "2026-03-31", "1", "100", "3", "1", "3.0", "全庁"],
        ["2025", "令和7年度", "2026-03-31", "2", "20", "2", "1", "10.0", "全庁"],
        ["2025", "令和7年度", "2026-03-31", "3", "0", "1", "1", "", "全庁"],
    ]


def test_a_year_without_targets_leaves_target_empty_and_names_the_department() -> None:
    """No target in the catalog for FY2030: target and percent are empty cells."""
    progress = target_progress(CATALOG, 2030, [standing("E1", 1)], department="D-A")
    rows = rows_of(progress_csv(progress))
    assert rows[1] == ["2030", "令和12年度", "2031-03-31", "1", "", "1", "1", "", "D-A"]


def test_filename_names_the_year_and_the_department() -> None:
    """The download is named after the fiscal year (and the department when filtered)."""
    assert csv_filename(2025, None) == "progress-2025.csv"
    assert csv_filename(2025, "D-01") == "progress-2025-D-01.csv"


def test_standings_fall_back_to_nominations_then_level_departments() -> None:
    """Without an HR record, a nomination places the employee; without one, the level does."""
    standings = assemble_standings(
        records=[("E1", dt.date(2023, 4, 1), "D-A")],
        departures=[("E4", dt.date(2025, 9, 30))],
        levels=[("E2", 1, dt.date(2025, 6, 1), "D-X"), ("E3", 1, dt.date(2025, 7, 1), "D-C")],
        nominations=[("E2", 2025, "D-B"), ("E1", 2025, "D-Z")],
    )
    by_id = {s.employee_id: s for s in standings}
    assert sorted(by_id) == ["E1", "E2", "E3", "E4"]
    day = dt.date(2026, 3, 31)
    assert by_id["E1"].department_on(day) == "D-A"
    assert by_id["E2"].department_on(day) == "D-B"
    assert by_id["E3"].department_on(day) == "D-C"
    assert by_id["E4"].department_on(day) == "unknown"
    assert by_id["E4"].left_on == dt.date(2025, 9, 30)
    assert dict(by_id["E2"].levels) == {1: dt.date(2025, 6, 1)}
