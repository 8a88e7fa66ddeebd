"""The dashboard's tables, and each one as a download: CSV (UTF-8 with BOM) and Excel (.xlsx).

A `Table` is what a page shows and what its downloads hold, so the two cannot disagree:
Japanese headers, one tuple of cells per row. Excel opens UTF-8 CSV as Shift_JIS unless it
starts with a byte order mark, hence the BOM; the workbook is written by openpyxl with the
header row bold and frozen.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font  # type: ignore[import-untyped]

Cell = str | int | float | None

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Table:
    """One table of a page: `key` names its download, `headers` its Japanese column names.

    `numeric` marks the columns shown right-aligned (and heat-coloured when `heat` names them).
    """

    key: str
    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[Cell, ...]]
    numeric: frozenset[int] = frozenset()
    heat: frozenset[int] = frozenset()
    flags: Sequence[bool] = field(default_factory=tuple)
    links: dict[int, str] = field(default_factory=dict)

    def heat_max(self, column: int) -> float:
        """The largest number in `column` (1 when there is none), the top of its colour scale."""
        values = [float(v) for r in self.rows if isinstance(v := r[column], int | float)]
        return max(values, default=1.0) or 1.0


def table_csv(table: Table) -> bytes:
    """`table` as CSV bytes: UTF-8 with BOM, CRLF, empty cells for None."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow(["" if c is None else c for c in row])
    return buffer.getvalue().encode("utf-8-sig")


def table_xlsx(table: Table, sheet_title: str) -> bytes:
    """`table` as an Excel workbook: one sheet, bold frozen header, numbers as numbers."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = sheet_title[:31]
    sheet.append(list(table.headers))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append(list(row))
    sheet.freeze_panes = "A2"
    for index, header in enumerate(table.headers, start=1):
        width = max([len(str(header)) * 2, *(len(str(r[index - 1] or "")) for r in table.rows)])
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = min(width + 2, 60)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def download_name(page: str, table: Table, fiscal_year: int, as_of: dt.date, ext: str) -> str:
    """`dxtalent-progress-levels-2025-20260331.csv`: ASCII, so every browser keeps it."""
    return f"dxtalent-{page}-{table.key}-{fiscal_year}-{as_of:%Y%m%d}.{ext}"
