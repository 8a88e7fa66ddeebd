"""The CloudEvents HTTP binding, pure: a request's body and headers into the events it carries.

Three modes (CloudEvents HTTP protocol binding 1.0):

- structured, `Content-Type: application/cloudevents+json`: the body is one event;
- batched, `application/cloudevents-batch+json`: the body is a JSON array of 1 to
  `MAX_BATCH_EVENTS` events;
- binary, `Content-Type: application/json`: the body is the event's `data`, and the
  attributes come from the `ce-*` headers (percent-decoded), e.g. `ce-id`, `ce-type`.

`read_events` returns each event's bytes in structured form for `check_inbound`, or raises
`UnreadableError` (answered 400 or 415) when the body cannot be read as events at all. Whether each
event is acceptable is not decided here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
BINARY = "application/json"
MAX_BATCH_EVENTS = 500
"""The most events one batched request may carry."""


class UnreadableError(ValueError):
    """A body that is not events in any mode: `status` is 400 or 415, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` → `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableError(400, f"{what} is not valid JSON: {exc}") from None


def _structured(body: bytes) -> list[bytes]:
    if not isinstance(_json(body, "the structured-mode body"), dict):
        raise UnreadableError(400, "a structured-mode body is one CloudEvent: a JSON object")
    return [body]


def _batch(body: bytes) -> list[bytes]:
    doc = _json(body, "the batched-mode body")
    if not isinstance(doc, list) or not doc:
        raise UnreadableError(400, "a batched-mode body is a non-empty JSON array of CloudEvents")
    if len(doc) > MAX_BATCH_EVENTS:
        raise UnreadableError(
            400, f"a batch carries at most {MAX_BATCH_EVENTS} events; this one has {len(doc)}"
        )
    not_objects = [i for i, item in enumerate(doc) if not isinstance(item, dict)]
    if not_objects:
        raise UnreadableError(
            400, f"batch items {not_objects[:5]} are not JSON objects (CloudEvents)"
        )
    return [json.dumps(item, ensure_ascii=False).encode() for item in doc]


def _binary(body: bytes, headers: Mapping[str, str]) -> list[bytes]:
    data = _json(body, "the binary-mode body (the event's data)")
    if not isinstance(data, dict):
        raise UnreadableError(400, "the binary-mode body is the event's data: a JSON object")
    event: dict[str, Any] = {
        name.lower().removeprefix("ce-"): unquote(value)
        for name, value in headers.items()
        if name.lower().startswith("ce-")
    }
    event["datacontenttype"] = BINARY
    event["data"] = data
    return [json.dumps(event, ensure_ascii=False).encode()]


def read_events(content_type: str | None, body: bytes, headers: Mapping[str, str]) -> list[bytes]:
    """The events of a request, each as structured-mode JSON bytes."""
    mode = media_type(content_type)
    if mode == STRUCTURED:
        return _structured(body)
    if mode == BATCH:
        return _batch(body)
    if mode == BINARY:
        return _binary(body, headers)
    raise UnreadableError(
        415,
        f"Content-Type {content_type!r} is not a CloudEvents mode this door reads: "
        f"{STRUCTURED}, {BATCH}, or {BINARY} with ce-* headers",
    )


def attribute(raw: bytes, name: str) -> str | None:
    """A string attribute of an event's structured bytes, when it has one (for answers about
    events that could not be accepted)."""
    try:
        value = json.loads(raw).get(name)
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None
