"""`dxtalent_contracts` as a package another team installs: what it exports and what it asks of
the environment it is installed into."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import dxtalent_contracts
from dxtalent_contracts.registry import ALL_EVENT_CLASSES

PYPROJECT = Path(__file__).resolve().parents[3] / "contracts" / "pyproject.toml"


def test_every_exported_name_exists_and_is_listed_once() -> None:
    """`__all__` names only what the package has, each once, so `import *` and linters agree."""
    names = dxtalent_contracts.__all__
    assert len(names) == len(set(names))
    assert [n for n in names if not hasattr(dxtalent_contracts, n)] == []


def test_every_event_class_and_its_payload_model_are_exported() -> None:
    """Each event class and the model of its `data` is importable from the package itself."""
    exported = set(dxtalent_contracts.__all__)
    for cls in ALL_EVENT_CLASSES:
        payload = cls.model_fields["data"].annotation
        assert isinstance(payload, type)
        assert {cls.__name__, payload.__name__} <= exported, cls.__name__
        assert getattr(dxtalent_contracts, cls.__name__) is cls


def test_the_entry_points_a_subscriber_needs_are_exported() -> None:
    """Parsers from bytes and from decoded JSON, the rejection, catalog loader, fiscal helpers
    and the names of the events stream and its subjects."""
    wanted = {
        "parse_event",
        "parse_event_json",
        "parse_inbound",
        "parse_inbound_json",
        "Rejection",
        "CloudEvent",
        "load_catalog",
        "fiscal_year_of",
        "japan_date",
        "STREAM_EVENTS",
        "EVENTS_ALL",
    }
    assert wanted <= set(dxtalent_contracts.__all__)


def test_dependencies_are_ranges_and_python_has_no_upper_bound() -> None:
    """Installed next to another team's code, the package pins nothing exactly: each dependency
    has a lower and an upper bound, and any Python from 3.11 on is accepted."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    for requirement in project["dependencies"]:
        assert "==" not in requirement, requirement
        assert re.search(r">=\d", requirement), requirement
        assert re.search(r"<\d", requirement), requirement
