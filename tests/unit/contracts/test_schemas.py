"""The checked-in JSON Schemas and AsyncAPI document are what the pydantic models generate now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dxtalent_contracts import asyncapi as asyncapi_module
from dxtalent_contracts import schemagen, subjects
from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.inbound import INBOUND_EVENT_CLASSES
from dxtalent_contracts.registry import ALL_EVENT_CLASSES, SUBJECT_BY_TYPE, type_name

SCHEMAS = Path(__file__).resolve().parents[3] / "contracts" / "schemas"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return schemagen.generate()


@pytest.fixture(scope="module")
def asyncapi(generated: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(generated[schemagen.ASYNCAPI_FILE])
    return doc


def test_checked_in_schemas_match_the_models(generated: dict[str, str]) -> None:
    """A model changed without regenerating the files fails here, naming each drifted file."""
    problems = schemagen.drift(SCHEMAS, generated)
    assert not problems, "contracts/schemas is out of date; run `make schemas`:\n" + "\n".join(
        problems
    )


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    """Two generations give the same bytes, each ending in one newline."""
    assert schemagen.generate() == generated
    assert all(text.endswith("\n") and not text.endswith("\n\n") for text in generated.values())


def test_every_event_type_has_a_draft_2020_12_data_schema(generated: dict[str, str]) -> None:
    """One JSON Schema per event type, named by the type, describing its `data`."""
    for cls in ALL_EVENT_CLASSES:
        doc = json.loads(generated[f"json/{type_name(cls)}.json"])
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["title"] == schemagen.data_model(cls).__name__
        assert doc["additionalProperties"] is False
    envelope = json.loads(generated[schemagen.ENVELOPE_FILE])
    assert {"specversion", "id", "source", "type", "data"} <= set(envelope["required"])


def test_the_drift_check_reports_a_changed_and_a_stale_file(
    tmp_path: Path, generated: dict[str, str]
) -> None:
    """`--check` exits 1 and names the edited file and a file no model generates any more."""
    schemagen.write(tmp_path)
    assert schemagen.main(["--check", str(tmp_path)]) == 0
    edited = tmp_path / "json" / "dxtalent.lms.CourseCompleted.v1.json"
    edited.write_text(edited.read_text().replace("completed_on", "finished_on"))
    (tmp_path / "json" / "dxtalent.lms.Gone.v1.json").write_text("{}\n")
    problems = schemagen.drift(tmp_path, generated)
    assert any("dxtalent.lms.CourseCompleted.v1.json: differs" in p for p in problems)
    assert any("dxtalent.lms.Gone.v1.json: no longer generated" in p for p in problems)
    assert schemagen.main(["--check", str(tmp_path)]) == 1


def test_asyncapi_has_a_channel_for_every_subject(asyncapi: dict[str, Any]) -> None:
    """Every subject in SUBJECT_BY_TYPE is a channel address carrying that type's message; the
    only other channels are the extra ones (dead letters of other services, unrecognised)."""
    assert asyncapi["asyncapi"] == "3.0.0"
    by_address = {ch["address"]: ch for ch in asyncapi["channels"].values()}
    extra = {address for address, *_ in asyncapi_module.extra_channels()}
    assert set(by_address) == set(SUBJECT_BY_TYPE.values()) | extra
    for etype, subject in SUBJECT_BY_TYPE.items():
        refs = [m["$ref"] for m in by_address[subject]["messages"].values()]
        names = [asyncapi["components"]["messages"][r.rsplit("/", 1)[1]]["name"] for r in refs]
        assert etype in names


def test_asyncapi_messages_are_cloudevents_with_typed_data(asyncapi: dict[str, Any]) -> None:
    """Each message is application/cloudevents+json, carries the NATS headers, and its payload
    is the envelope whose `data` references the type's data schema."""
    schemas = asyncapi["components"]["schemas"]
    for cls in ALL_EVENT_CLASSES:
        message = asyncapi["components"]["messages"][type_name(cls).replace(".", "_")]
        assert message["contentType"] == CONTENT_TYPE
        headers = schemas[message["headers"]["$ref"].rsplit("/", 1)[1]]
        assert set(headers["required"]) == {"Nats-Msg-Id", "Content-Type"}
        payload = schemas[message["payload"]["$ref"].rsplit("/", 1)[1]]
        assert payload["properties"]["type"]["const"] == type_name(cls)
        data_ref = payload["properties"]["data"]["$ref"]
        assert data_ref == f"#/components/schemas/{schemagen.data_model(cls).__name__}"


def test_asyncapi_operations_receive_inbound_and_send_domain_events(
    asyncapi: dict[str, Any],
) -> None:
    """Inbound facts (and unrecognised inbound messages) are received by the enrollment
    service; every other type, and every service's dead letters, are sent."""
    actions: dict[str, str] = {}
    for op in asyncapi["operations"].values():
        channel = asyncapi["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]
        actions[channel["address"]] = op["action"]
    inbound = {cls.nats_subject for cls in INBOUND_EVENT_CLASSES}
    expected = {s: "receive" if s in inbound else "send" for s in SUBJECT_BY_TYPE.values()}
    expected |= {a: action for a, _, action, _ in asyncapi_module.extra_channels()}
    assert actions == expected
    for service, subject in subjects.DEADLETTER_BY_SERVICE.items():
        assert actions[subject] == "send", service
    assert actions[subjects.INBOUND_UNRECOGNISED] == "receive"


def test_every_dead_letter_channel_carries_message_rejected(asyncapi: dict[str, Any]) -> None:
    """Each service's dead-letter subject carries the MessageRejected CloudEvent."""
    by_address = {ch["address"]: ch for ch in asyncapi["channels"].values()}
    for subject in subjects.DEADLETTER_BY_SERVICE.values():
        refs = [m["$ref"] for m in by_address[subject]["messages"].values()]
        assert refs == ["#/components/messages/dxtalent_enrollment_MessageRejected_v1"]
