"""Shared pytest configuration: markers come from the folder a test lives in; real-server
fixtures come from `tests.support.servers`."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.servers", "tests.support.cluster"]

_LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for layer in _LAYERS:
            if layer in parts:
                item.add_marker(getattr(pytest.mark, layer))
