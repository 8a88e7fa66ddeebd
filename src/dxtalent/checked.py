"""What `dxtalent publish` sends: every fact of a file, checked first as enrollment checks it.

Each fact is read (a JSON line, or a CSV row made into a CourseCompleted) and then put through
the enrollment service's own checks: the contract (`parse_inbound`) and the catalog
(`catalog_problems`: unknown codes, dates outside a course's offering period, ...), so a fact
the service would dead-letter is reported at once with the same problems, before sending.
(The subject is not checked: publish sends each fact on its type's subject.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dxtalent.csv_import import numbered_json_lines, parse_completions_csv
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.registry import Rejection, parse_inbound
from dxtalent_enrollment.domain import catalog_problems


@dataclass(frozen=True)
class Rejected:
    """A fact that will not be sent: where it is in the file ("row 4", "line 2") and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class CheckedFacts:
    """The facts of one file: the accepted ones as bytes to send, and the rejected ones."""

    accepted: list[bytes] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _read(
    text: str, *, as_csv: bool, source: str
) -> tuple[list[tuple[str, bytes]], list[Rejected]]:
    """The file's facts as (where, bytes), and the CSV rows that could not be read."""
    if not as_csv:
        return [(f"line {n}", raw) for n, raw in numbered_json_lines(text)], []
    imported = parse_completions_csv(text, source=source)
    facts = [(f"row {n}", event.to_json_bytes()) for n, event in imported.numbered]
    unread = [Rejected(f"row {e.row}", e.reason) for e in imported.errors]
    return facts, unread


def problem(catalog: Catalog, raw: bytes) -> str | None:
    """Why enrollment would refuse this fact, or None when it would accept it."""
    parsed = parse_inbound(raw)
    if isinstance(parsed, Rejection):
        return parsed.reason
    problems = catalog_problems(catalog, parsed)
    return "; ".join(f"{p.field}: {p.problem}" for p in problems) or None


def check_facts(catalog: Catalog, text: str, *, as_csv: bool, source: str) -> CheckedFacts:
    """Every fact of `text` accepted or rejected, in file order within each list."""
    facts, unread = _read(text, as_csv=as_csv, source=source)
    result = CheckedFacts(rejected=unread)
    for where, raw in facts:
        reason = problem(catalog, raw)
        if reason is None:
            result.accepted.append(raw)
        else:
            result.rejected.append(Rejected(where, reason))
    result.rejected.sort(key=lambda r: (r.where.split()[0], int(r.where.split()[1])))
    return result
