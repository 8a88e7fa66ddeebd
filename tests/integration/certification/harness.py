"""The certification service run in-process against real servers, and enrollment events for it.

`Enrollment` builds the domain events enrollment's relay publishes (CloudEvents of the
contracts' `*RecordedEvent` classes); `RunningService` publishes them, waits until the service
is caught up (`GET /v1/status`), and reads what it produced: the wire (`DX_EVENTS`, `DX_DEADLETTER`),
its event store and its HTTP API.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.envelope import CONTENT_TYPE, CloudEvent
from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseCompletionRecorded,
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    LeaderNominatedRecordedEvent,
    LeaderNominationRecorded,
)
from dxtalent_contracts.fiscal import JST, fiscal_year_of
from dxtalent_contracts.inbound import CompletionVoided, EmployeeLeft, EmployeeUpserted
from dxtalent_contracts.registry import type_name
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.records import RecordedEvent
from dxtalent_infra.topology import DEADLETTER, EVENTS, Topology
from tests.support.polling import eventually

SOURCE = "urn:hirakata:dxtalent:enrollment"
TOKEN = "test-token"
L1_COURSES = (
    "DX-101",
    "ICT-101",
    "SEC-101",
    "DATA-101",
    "DSGN-101",
    "GAI-101",
    "TOOL-ONL",
    "WS-101",
)
#: Every skill the level-1 courses grant (DX-101 grants two).
L1_SKILLS = frozenset(s for c in L1_COURSES for s in load_catalog().course_by_id[c].grants)


@dataclass
class Enrollment:
    """Enrollment domain events about one employee, each with a fresh id."""

    employee_id: str = field(default_factory=lambda: "E" + uuid.uuid4().hex[:8])

    def _envelope(
        self, cls: type[CloudEvent], data: Any, *, correlation: str | None = None
    ) -> CloudEvent:
        inbound = f"in-{uuid.uuid4()}"
        return cls.model_validate(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": SOURCE,
                "type": type_name(cls),
                "subject": self.employee_id,
                "time": dt.datetime(2025, 6, 1, 9, 0, tzinfo=JST),
                "causationid": inbound,
                "correlationid": correlation or inbound,
                "data": data,
            }
        )

    def record(
        self,
        department: str = "D-SOUMU",
        effective: str = "2025-04-01",
        categories: tuple[str, ...] = ("dx-leader",),
    ) -> CloudEvent:
        """The employee's HR record."""
        data = EmployeeUpserted(
            employee_id=self.employee_id,
            department_code=department,
            categories=list(categories),
            effective_date=dt.date.fromisoformat(effective),
        )
        return self._envelope(EmployeeUpdatedEvent, data)

    def left(self, on: str) -> CloudEvent:
        """The employee left on `on` (the first day no longer employed)."""
        data = EmployeeLeft(employee_id=self.employee_id, left_on=dt.date.fromisoformat(on))
        return self._envelope(EmployeeLeftRecordedEvent, data)

    def nomination(self, fiscal_year: int = 2025, department: str = "D-SOUMU") -> CloudEvent:
        """A DX-leader nomination."""
        data = LeaderNominationRecorded(
            employee_id=self.employee_id, fiscal_year=fiscal_year, department_code=department
        )
        return self._envelope(LeaderNominatedRecordedEvent, data)

    def completion(
        self,
        course: str,
        on: str = "2025-06-01",
        *,
        fact_id: str | None = None,
        correlation: str | None = None,
    ) -> CloudEvent:
        """A completed course; `fact_id` is the inbound id voids refer to."""
        day = dt.date.fromisoformat(on)
        data = CourseCompletionRecorded(
            employee_id=self.employee_id,
            course_id=course,
            completed_on=day,
            fiscal_year=fiscal_year_of(day),
            skills=[],
            fact_id=fact_id or f"lms-{uuid.uuid4()}",
        )
        return self._envelope(CourseCompletedRecordedEvent, data, correlation=correlation)

    def void(self, completion: CloudEvent, reason: str = "recorded in error") -> CloudEvent:
        """A void of `completion`."""
        data = CompletionVoided(
            employee_id=self.employee_id,
            course_id=completion.data.course_id,
            voided_event_id=completion.data.fact_id,
            reason=reason,
        )
        return self._envelope(CompletionVoidedRecordedEvent, data)


@dataclass
class RunningService:
    """A certification service running in this process, and clients to talk to it."""

    topology: Topology
    schema: str
    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    http: httpx.AsyncClient

    async def publish(self, event: CloudEvent, *, msg_id: bool = True) -> None:
        """Publish as enrollment's relay does; without `msg_id`, JetStream cannot de-duplicate."""
        headers = {"Content-Type": CONTENT_TYPE}
        if msg_id:
            headers["Nats-Msg-Id"] = event.id
        await self.publish_raw(event.nats_subject, event.to_json_bytes(), headers)

    async def publish_raw(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publish any bytes on a contract subject."""
        await self.js.publish(self.topology.subject(subject), data, headers=headers)

    async def caught_up(self) -> None:
        """Wait until every published message is applied and its events are on the wire."""

        async def caught_up() -> bool:
            return (await self.http.get("/v1/status")).json()["caught_up"] is True

        await eventually(caught_up, "the service caught up (/v1/status)")

    async def wire(self, contract_stream: str = EVENTS.name) -> list[dict[str, Any]]:
        """Every CloudEvent in a stream, in order, with its contract subject as `_subject`."""
        name = self.topology.stream(contract_stream)
        info = await self.js.stream_info(name)
        out: list[dict[str, Any]] = []
        if not info.state.messages:
            return out
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await self.js.get_msg(name, seq)
            doc: dict[str, Any] = json.loads(msg.data or b"")
            doc["_subject"] = self.topology.contract_subject(msg.subject or "")
            out.append(doc)
        return out

    async def emitted(
        self, employee_id: str, event_name: str | None = None
    ) -> list[dict[str, Any]]:
        """Certification events about `employee_id` on the wire (of one event name if given)."""
        prefix = f"dx.events.certification.{event_name or ''}"
        return [
            e
            for e in await self.wire()
            if e["_subject"].startswith(prefix) and e.get("subject") == employee_id
        ]

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters of the certification consumer."""
        return [
            e
            for e in await self.wire(DEADLETTER.name)
            if e["_subject"] == "dx.deadletter.certification"
        ]

    async def stored(self, employee_id: str) -> list[RecordedEvent]:
        """The employee's stream in the certification event store."""
        return await PostgresEventStore(self.pool, self.schema).read_stream(
            f"employee-{employee_id}"
        )

    async def employee(self, employee_id: str) -> dict[str, Any]:
        """GET /v1/employees/{id}, expecting 200."""
        response = await self.http.get(f"/v1/employees/{employee_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
