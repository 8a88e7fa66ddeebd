"""Every NATS subject the code publishes or subscribes is a channel of the AsyncAPI document.

The subjects are collected from the code itself, never from a copied list: the event classes'
own subjects (what the outboxes and `dxtalent publish` send), every service's consumers (filter
and dead-letter subjects, from the `SPEC` the CLI serves), the streams, the `subjects` module,
and a scan of every source module for a string that is a whole subject.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dxtalent.cli import ServiceName
from dxtalent.nats_tools import UNKNOWN_SUBJECT
from dxtalent_contracts import schemagen, subjects
from dxtalent_contracts.registry import ALL_EVENT_CLASSES
from dxtalent_infra.runtime import ServiceSpec
from dxtalent_infra.topology import ALL_STREAMS

ROOT = Path(__file__).resolve().parents[3]
SOURCE_DIRS = [ROOT / "src", ROOT / "contracts" / "src", ROOT / "infra" / "src"]
SOURCE_DIRS += sorted((ROOT / "services").glob("*/src"))


def is_subject(text: str) -> bool:
    """`dx.` followed by NATS tokens; `*` matches one token, a final `>` the rest."""
    tokens = text.split(".")
    if len(tokens) < 2 or tokens[0] != "dx" or ">" in tokens[:-1]:
        return False
    return all(t in ("*", ">") or (t and all(c.isalnum() or c == "-" for c in t)) for t in tokens)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching of a concrete subject against a filter with wildcards."""
    want, have = pattern.split("."), subject.split(".")
    if want[-1] == ">":
        return len(have) >= len(want) and all(
            w in ("*", h) for w, h in zip(want[:-1], have, strict=False)
        )
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def service_specs() -> list[ServiceSpec]:
    """The spec of every service `dxtalent serve` can run."""
    specs = [importlib.import_module(f"dxtalent_{s.value}.service").SPEC for s in ServiceName]
    assert all(isinstance(s, ServiceSpec) for s in specs)
    return specs


def wired_subjects() -> set[str]:
    """What the running code publishes to and subscribes to, from its own definitions."""
    found = {cls.nats_subject for cls in ALL_EVENT_CLASSES} | {UNKNOWN_SUBJECT}
    for spec in service_specs():
        for consumer in spec.consumers:
            found |= {*consumer.filter_subjects, consumer.deadletter_subject}
    found |= {s for stream in ALL_STREAMS for s in stream.subjects}
    found |= {v for v in vars(subjects).values() if isinstance(v, str) and is_subject(v)}
    found |= set(subjects.DEADLETTER_BY_SERVICE.values())
    return found


def _strings(tree: ast.AST) -> Iterator[tuple[int, str | None]]:
    """Each string constant, and each f-string that starts with `dx.` (as None: not knowable)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and str(head.value).startswith("dx."):
                yield node.lineno, None


def literal_subjects(dirs: Iterable[Path]) -> tuple[set[str], list[str]]:
    """Subjects written as literals anywhere in the source, and where a subject is built by an
    f-string (which no test can enumerate)."""
    found: set[str] = set()
    built: list[str] = []
    for path in sorted(p for d in dirs for p in d.rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            if text is None:
                built.append(f"{path.relative_to(ROOT)}:{line}")
            elif is_subject(text):
                found.add(text)
    return found, built


def undocumented(used: Iterable[str], addresses: set[str]) -> list[str]:
    """Subjects that match no channel address (a concrete one must equal one; a wildcard
    must match at least one)."""
    return sorted(s for s in used if not any(matches(s, a) for a in addresses))


@pytest.fixture(scope="module")
def addresses() -> set[str]:
    doc: dict[str, Any] = yaml.safe_load(schemagen.generate()[schemagen.ASYNCAPI_FILE])
    return {ch["address"] for ch in doc["channels"].values()}


def test_the_code_names_its_subjects_where_they_can_be_collected() -> None:
    """No subject is assembled with an f-string, and the collection finds the known ones."""
    found, built = literal_subjects(SOURCE_DIRS)
    assert not built, (
        f"subjects built by f-strings; name them in dxtalent_contracts.subjects: {built}"
    )
    wired = wired_subjects()
    assert {subjects.DEADLETTER_CERTIFICATION, subjects.INBOUND_UNRECOGNISED} <= wired
    assert {"dx.events.certification.level-certified", "dx.deadletter.reporting"} <= found


def test_every_subject_the_code_uses_is_in_the_asyncapi_document(addresses: set[str]) -> None:
    """A subject published or consumed anywhere in the code and missing from the document fails."""
    used = wired_subjects() | literal_subjects(SOURCE_DIRS)[0]
    missing = undocumented(used, addresses)
    assert not missing, f"subjects missing from contracts/schemas/asyncapi.yaml: {missing}"


def test_every_documented_subject_is_kept_by_a_stream(addresses: set[str]) -> None:
    """Each channel lies in one of the streams, so what the document promises is stored."""
    captured = [s for stream in ALL_STREAMS for s in stream.subjects]
    assert [a for a in addresses if not any(matches(c, a) for c in captured)] == []


def test_a_document_without_a_used_subject_is_caught(addresses: set[str]) -> None:
    """Dropping the reporting dead-letter channel, or all enrollment events, is reported."""
    without = addresses - {subjects.DEADLETTER_REPORTING}
    assert undocumented(wired_subjects(), without) == [subjects.DEADLETTER_REPORTING]
    no_enrollment = {a for a in addresses if not a.startswith("dx.events.enrollment.")}
    missing = undocumented(wired_subjects(), no_enrollment)
    assert subjects.ENROLLMENT_EVENTS in missing


def test_subject_matching_follows_nats_wildcards() -> None:
    """`*` takes one token, `>` one or more; anything else must be equal."""
    assert matches("dx.events.>", "dx.events.enrollment.employee-left")
    assert not matches("dx.events.>", "dx.events")
    assert matches("dx.*.inbound", "dx.deadletter.inbound")
    assert not matches("dx.*.inbound", "dx.deadletter.inbound.x")
    assert is_subject("dx.inbound.>")
    assert not is_subject("dx.events.<service>.<event-name>")
