"""Services refuse a NATS server older than 2.10 (decision 0201), with a clear error."""

from __future__ import annotations

import os

import nats
import pytest

from dxtalent_infra.nats import MIN_SERVER_VERSION, UnsupportedServerError, require_server_version
from tests.support.servers import nats_server_version


async def test_a_server_older_than_2_10_is_refused_and_a_newer_one_accepted(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        require_server_version(nc)  # the suite's server is always new enough
    finally:
        await nc.close()
    old = os.environ.get("DXT_TEST_NATS_URL")
    version = nats_server_version(old) if old else None
    if version is None or version[:2] >= MIN_SERVER_VERSION:
        pytest.skip("no NATS server older than 2.10 here (DXT_TEST_NATS_URL)")
    assert old is not None
    nc = await nats.connect(old)
    try:
        with pytest.raises(UnsupportedServerError, match=r"needs nats-server 2\.10 or later"):
            require_server_version(nc)
    finally:
        await nc.close()
