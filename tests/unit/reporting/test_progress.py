"""Progress against the headcount targets: reached, exactly, percent, leavers, departments."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from dxtalent_contracts.catalog import load_catalog
from dxtalent_reporting.domain.progress import (
    UNKNOWN_DEPARTMENT,
    LevelProgress,
    Standing,
    percent,
    progress_by_department,
    progress_from_tally,
    target_progress,
)

CATALOG = load_catalog()


def d(text: str) -> dt.date:
    """An ISO date."""
    return dt.date.fromisoformat(text)


def at_level(
    employee_id: str,
    level: int,
    on: str = "2025-06-01",
    department: str = "D-A",
    left_on: str | None = None,
) -> Standing:
    """An employee certified at levels 1..`level`, all on `on`, in one department."""
    return Standing(
        employee_id=employee_id,
        records=((d("2023-04-01"), department),),
        left_on=d(left_on) if left_on else None,
        levels={n: d(on) for n in range(1, level + 1)},
    )


def by_level(levels: tuple[LevelProgress, ...]) -> dict[int, tuple[int, int]]:
    """(reached, exactly) per level."""
    return {p.level: (p.reached, p.exactly) for p in levels}


def test_reached_counts_the_level_or_higher_and_exactly_the_highest() -> None:
    """Three at level 1, two at level 2, one at level 3, one with none."""
    standings = [at_level(f"E{i}", n) for i, n in enumerate([1, 1, 1, 2, 2, 3, 0])]
    progress = target_progress(CATALOG, 2026, standings)
    assert by_level(progress.levels) == {1: (6, 3), 2: (3, 2), 3: (1, 1)}
    assert [(p.target, p.percent) for p in progress.levels] == [
        (130, Decimal("4.6")),
        (40, Decimal("7.5")),
        (10, Decimal("10.0")),
    ]
    assert (progress.fiscal_year, progress.fiscal_year_label) == (2026, "令和8年度")
    assert (progress.as_of, progress.department) == (d("2027-03-31"), None)


def test_percent_rounds_half_up_to_one_decimal_and_is_none_without_a_target() -> None:
    """6.25 → 6.3 (not banker's 6.2); a target of 0 or no target gives None."""
    assert percent(1, 16) == Decimal("6.3")
    assert percent(0, 100) == Decimal("0.0")
    assert percent(5, 0) is None
    assert percent(5, None) is None


def test_a_level_with_target_zero_has_no_percent() -> None:
    """FY2025 level 3 target is 0: percent is None even with someone reached."""
    level_three = target_progress(CATALOG, 2025, [at_level("E1", 3)]).levels[2]
    assert (level_three.target, level_three.reached, level_three.percent) == (0, 1, None)


def test_a_year_without_targets_reports_counts_without_percent() -> None:
    """FY2030 is outside the plan: targets and percents are None, counts are still there."""
    progress = target_progress(CATALOG, 2030, [at_level("E1", 1)])
    assert [(p.target, p.percent, p.reached) for p in progress.levels[:1]] == [(None, None, 1)]


def test_staff_who_left_are_excluded_and_counted_apart() -> None:
    """Left on March 31: not employed at the year's end; left on April 1: still counted."""
    standings = [
        at_level("E1", 2, left_on="2026-03-31"),
        at_level("E2", 1, left_on="2026-04-01"),
        at_level("E3", 0, left_on="2025-12-31"),
    ]
    progress = target_progress(CATALOG, 2025, standings)
    assert by_level(progress.levels) == {1: (1, 1), 2: (0, 0), 3: (0, 0)}
    assert [p.left for p in progress.levels] == [1, 1, 0]
    assert progress.left == 1


def test_as_of_reports_a_past_date() -> None:
    """Certified on 2025-10-01: not reached as of 2025-09-30, reached on 2025-10-01."""
    standings = [at_level("E1", 1, on="2025-10-01")]
    before = target_progress(CATALOG, 2025, standings, as_of=d("2025-09-30"))
    on_the_day = target_progress(CATALOG, 2025, standings, as_of=d("2025-10-01"))
    assert (before.as_of, before.levels[0].reached) == (d("2025-09-30"), 0)
    assert on_the_day.levels[0].reached == 1


def test_a_certification_after_the_year_s_end_does_not_count_for_that_year() -> None:
    """Certified on 2026-04-01 counts for FY2026, not FY2025."""
    standings = [at_level("E1", 1, on="2026-04-01")]
    assert target_progress(CATALOG, 2025, standings).levels[0].reached == 0
    assert target_progress(CATALOG, 2026, standings).levels[0].reached == 1


def test_the_sixty_fy2024_trainees_count_toward_the_fy2025_level_one_target() -> None:
    """60 certified in FY2024 plus 13 in FY2025: 73 of 100 reached, 73.0 percent."""
    trainees = [at_level(f"T{i:02d}", 1, on="2024-11-15") for i in range(60)]
    newcomers = [at_level(f"N{i:02d}", 1, on="2025-09-01") for i in range(13)]
    level_one = target_progress(CATALOG, 2025, trainees + newcomers).levels[0]
    assert (level_one.target, level_one.reached, level_one.exactly) == (100, 73, 73)
    assert level_one.percent == Decimal("73.0")


def test_an_employee_counts_where_the_record_effective_on_the_report_date_places_them() -> None:
    """Moved from D-A to D-B on 2025-10-01: D-A in September, D-B at the year's end."""
    moved = Standing(
        "E1", ((d("2023-04-01"), "D-A"), (d("2025-10-01"), "D-B")), None, {1: d("2025-06-01")}
    )
    september = target_progress(CATALOG, 2025, [moved], as_of=d("2025-09-30"), department="D-A")
    year_end_a = target_progress(CATALOG, 2025, [moved], department="D-A")
    year_end_b = target_progress(CATALOG, 2025, [moved], department="D-B")
    assert [p.levels[0].reached for p in (september, year_end_a, year_end_b)] == [1, 0, 1]
    assert year_end_b.department == "D-B"


def test_records_starting_later_or_missing_still_place_the_employee() -> None:
    """Only a future record: its department; no record at all: "unknown"."""
    future = Standing("E1", ((d("2026-04-01"), "D-LATER"),), None, {1: d("2025-06-01")})
    nowhere = Standing("E2", (), None, {1: d("2025-06-01")})
    assert future.department_on(d("2026-03-31")) == "D-LATER"
    assert nowhere.department_on(d("2026-03-31")) == UNKNOWN_DEPARTMENT


def test_progress_by_department_gives_one_report_per_department() -> None:
    """Two departments and an unplaced employee: three reports, each counting its own."""
    standings = [
        at_level("E1", 2, department="D-A"),
        at_level("E2", 1, department="D-B"),
        at_level("E3", 1, department="D-B"),
        Standing("E4", (), None, {1: d("2025-06-01")}),
    ]
    reports = progress_by_department(CATALOG, 2025, standings)
    assert list(reports) == ["D-A", "D-B", UNKNOWN_DEPARTMENT]
    assert {k: by_level(p.levels)[1] for k, p in reports.items()} == {
        "D-A": (1, 0),
        "D-B": (2, 2),
        UNKNOWN_DEPARTMENT: (1, 1),
    }
    assert reports["D-A"].levels[0].target == 100  # the city's target, shared


def defined_level(
    level: int, target: int | None, tally: Mapping[tuple[int, bool], int]
) -> LevelProgress:
    """One level as the rules define it, summed over the tally (what the one-pass
    `progress_from_tally` must give)."""
    reached = sum(k for (h, employed), k in tally.items() if employed and h >= level)
    return LevelProgress(
        level=level,
        target=target,
        reached=reached,
        exactly=sum(k for (h, employed), k in tally.items() if employed and h == level),
        percent=percent(reached, target),
        left=sum(k for (h, employed), k in tally.items() if not employed and h >= level),
    )


# highest levels up to two above the catalog's top (a catalog edited to fewer levels), and
# below 0, which nothing writes and the definition counts nowhere
tallies = st.dictionaries(
    st.tuples(st.integers(-1, CATALOG.top_level + 2), st.booleans()), st.integers(1, 10_000)
)


@given(tallies, st.sampled_from([2024, 2025, 2026, 2027, 2030]))
def test_a_report_from_a_tally_is_each_level_as_defined(
    tally: dict[tuple[int, bool], int], year: int
) -> None:
    day = d(f"{year + 1}-03-31")
    progress = progress_from_tally(CATALOG, year, day, "D-A", tally)
    assert progress.levels == tuple(
        defined_level(n, CATALOG.target(year, n), tally) for n in range(1, CATALOG.top_level + 1)
    )
    assert progress.left == sum(k for (h, employed), k in tally.items() if not employed and h >= 1)
    assert (progress.fiscal_year, progress.as_of, progress.department) == (year, day, "D-A")
