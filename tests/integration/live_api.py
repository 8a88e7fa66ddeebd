"""A running service for schemathesis: `run_service` on an event loop of its own thread.

Schemathesis's pytest integration calls the API synchronously; a service on the test's own
event loop would not answer while the test waits. `ThreadedService` starts the service in a
thread, waits until it is caught up (`GET /v1/status`), publishes events for it to apply
(`publish`), and on exit stops it gracefully, drops its schema and deletes its streams.
`CHECKS` are the checks every service's API is held to.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg
import httpx
import nats
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from dxtalent_contracts.envelope import CONTENT_TYPE, CloudEvent
from dxtalent_infra.http_api import SECURITY_SCHEME
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.runtime import ServiceSpec, run_service, schema_for
from dxtalent_infra.settings import Settings
from dxtalent_infra.topology import ALL_STREAMS, Topology

T = TypeVar("T")

CHECKS = [
    not_a_server_error,  # no 5xx
    status_code_conformance,  # every status is one the document lists
    content_type_conformance,
    response_schema_conformance,  # bodies as the document describes them
    positive_data_acceptance,  # no request the document allows is refused
    negative_data_rejection,  # requests it does not allow are refused with a 4xx
]


def assert_documented_401(case: schemathesis.Case[Any]) -> None:
    """A request without the service's token: a documented 401 with the Bearer challenge (or
    405 for schemathesis's probes with another method)."""
    response = case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
    )
    if case.method.upper() != case.operation.method.upper():  # a probe with another method
        assert response.status_code == 405, response.text
        return
    assert response.status_code == 401, response.text
    [challenge] = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="dxtalent"'), challenge


def with_token(token: str) -> schemathesis.Config:
    """Schemathesis configuration that sends `Authorization: Bearer <token>` (`bearerAuth`)."""
    return schemathesis.Config.from_dict(
        {"auth": {"openapi": {SECURITY_SCHEME: {"bearer": token}}}}
    )


@pytest.fixture(autouse=True)
def schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's `from_fixture` reads `Item._nodeid`, which pytest 9.2 no longer has;
    it only uses it to name each operation's subtest."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


class ThreadedService:
    """`with ThreadedService(spec, settings) as service:` — running and ready inside."""

    def __init__(self, spec: ServiceSpec, settings: Settings) -> None:
        assert settings.http_port is not None, "give the service a port"
        self.spec = spec
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{settings.http_port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"service-{spec.name}")

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        try:
            await run_service(self.spec, self.settings, self._stop)
        finally:
            await self._clean_up()

    async def _clean_up(self) -> None:
        assert self.settings.database_url is not None
        assert self.settings.nats_url is not None
        conn = await asyncpg.connect(self.settings.database_url, timeout=5)
        try:
            schema = schema_for(self.settings, self.spec.name)
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        finally:
            await conn.close()
        nc = await nats.connect(self.settings.nats_url)
        topology = Topology(self.settings.prefix)
        for stream in ALL_STREAMS:
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(topology.stream(stream.name))
        await nc.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coro` on the service's event loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def publish(self, events: Sequence[CloudEvent]) -> None:
        """Publish events on their subjects (as a relay does), then wait until applied."""

        async def publish() -> None:
            assert self.settings.nats_url is not None
            topology = Topology(self.settings.prefix)
            nc = await nats.connect(self.settings.nats_url)
            for event in events:
                headers = {"Nats-Msg-Id": event.id, "Content-Type": CONTENT_TYPE}
                await nc.jetstream().publish(
                    topology.subject(event.nats_subject), event.to_json_bytes(), headers=headers
                )
            await nc.close()

        self.call(publish())
        self.wait_ready()

    def wait_ready(self, within: float = 30) -> None:
        """Until `GET /v1/status` says `caught_up`: serving, and every consumer caught up."""
        token = self.settings.api_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._failure is not None:
                raise AssertionError(f"{self.spec.name} stopped: {self._failure!r}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                status = httpx.get(f"{self.base_url}/v1/status", headers=headers, timeout=2)
                if status.status_code == 200 and status.json()["caught_up"] is True:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{self.spec.name} was not ready within {within}s")

    def __enter__(self) -> ThreadedService:
        self._thread.start()
        self._started.wait(10)
        self.wait_ready()
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
