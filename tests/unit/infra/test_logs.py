"""Logging writes to the stderr of the moment, not to the one it was configured with."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from dxtalent_infra.logs import configure_logging


def test_logging_survives_the_stream_it_was_configured_with_being_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test runner may swap and close stderr after a command configured logging; later log
    lines go to the current stderr instead of failing on a closed file."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("info", json=True)
    structlog.get_logger("t").info("before")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    structlog.get_logger("t").info("after")
    assert '"event": "after"' in second.getvalue()
