"""The CloudEvents 1.0 envelope in structured JSON mode (docs/contract.md, "Envelope")."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from dxtalent_contracts.types import ZonedTimestamp

CONTENT_TYPE = "application/cloudevents+json"

EventId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Source = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Model(BaseModel):
    """Base of every contract model: immutable, unknown fields refused, strict types.

    Strict, but dates and times given as text are read as JSON would read them, so decoded
    JSON (a dict) validates exactly as the bytes it came from (`dxtalent_contracts.types`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class CloudEvent(Model):
    """Attributes every event carries, whatever its type.

    `id` is unique per `source`; the pair is the idempotency key. `causationid` and
    `correlationid` are extension attributes set on every domain event.
    """

    #: Which NATS subject carries events of this type; set by every concrete subclass.
    nats_subject: ClassVar[str] = ""

    specversion: Literal["1.0"]
    id: EventId
    source: Source
    type: str
    subject: str | None = None
    time: ZonedTimestamp | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    causationid: EventId | None = None
    correlationid: EventId | None = None
    data: Any

    def to_json_bytes(self) -> bytes:
        """Structured-mode JSON, without unset optional envelope attributes.

        Only envelope attributes are left out when None: inside `data`, a nullable field
        without a default (e.g. LevelCertified.department_code) must stay as `null`, or the
        bytes would not parse back.
        """
        unset = {name for name in _OPTIONAL_ATTRIBUTES if getattr(self, name) is None}
        return self.model_dump_json(exclude=unset).encode()


_OPTIONAL_ATTRIBUTES = ("subject", "time", "causationid", "correlationid")
