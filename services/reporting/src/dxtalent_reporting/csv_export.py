"""The progress report as CSV for Excel: UTF-8 with a BOM, CRLF line ends, Japanese header.

Excel opens a UTF-8 file as Shift_JIS unless it starts with a byte order mark, so the BOM is
what makes the Japanese header and 和暦 labels readable there. One row per level; an unset
target and an undefined percent (target 0) are empty cells, not 0.
"""

from __future__ import annotations

import csv
import io

from dxtalent_reporting.domain.progress import Progress

HEADER = (
    "年度",
    "年度(和暦)",
    "基準日",
    "レベル",
    "目標人数",
    "到達人数",
    "うち当該レベル",
    "達成率(%)",
    "所属",
)
#: What the 所属 column says for the city-wide report.
CITY_WIDE = "全庁"
MEDIA_TYPE = "text/csv; charset=utf-8"


def progress_csv(progress: Progress) -> bytes:
    """The rows of `progress` as CSV bytes (UTF-8 with BOM, CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for level in progress.levels:
        writer.writerow(
            (
                progress.fiscal_year,
                progress.fiscal_year_label,
                progress.as_of.isoformat(),
                level.level,
                "" if level.target is None else level.target,
                level.reached,
                level.exactly,
                "" if level.percent is None else f"{level.percent:.1f}",
                progress.department or CITY_WIDE,
            )
        )
    return buffer.getvalue().encode("utf-8-sig")


def csv_filename(fiscal_year: int, department: str | None) -> str:
    """`progress-2025.csv`, or `progress-2025-<department>.csv` for one department."""
    return (
        f"progress-{fiscal_year}-{department}.csv" if department else f"progress-{fiscal_year}.csv"
    )
