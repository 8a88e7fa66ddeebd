"""Fixtures of the reporting service's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dxtalent_infra.topology import Topology
from tests.integration.reporting.harness import Reporting, run_reporting


@pytest.fixture
async def reporting(
    nats_url: str, database_url: str, topology: Topology
) -> AsyncIterator[Reporting]:
    """The reporting service without an API token, ready, on this test's own prefix."""
    async with run_reporting(nats_url, database_url, topology) as service:
        yield service
