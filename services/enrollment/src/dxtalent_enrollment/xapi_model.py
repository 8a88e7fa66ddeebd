"""The xAPI 1.0.3 statement, as the enrollment service validates it: the properties it knows,
one identifier per agent, IRIs and UUIDs where xAPI requires them; properties inside that this
service does not read are kept as sent (`_Open`)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

IRI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$"
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")


class _Open(BaseModel):
    """Properties this service does not read are kept as sent."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Account(_Open):
    homePage: str = Field(min_length=1)  # noqa: N815 (xAPI's name)
    name: str = Field(min_length=1)


class Actor(_Open):
    """An Agent or Group: one inverse functional identifier, or an anonymous group's members."""

    objectType: Literal["Agent", "Group"] | None = None  # noqa: N815
    mbox: str | None = Field(default=None, pattern=r"^mailto:\S+@\S+$")
    mbox_sha1sum: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{40}$")
    openid: str | None = None
    account: Account | None = None
    member: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> Actor:
        given = [name for name in _IFIS if getattr(self, name) is not None]
        anonymous_group = self.objectType == "Group" and self.member is not None and not given
        if len(given) != 1 and not anonymous_group:
            raise ValueError(f"an agent has exactly one of {', '.join(_IFIS)}; got {given}")
        return self


class Verb(_Open):
    id: str = Field(pattern=IRI_PATTERN, max_length=2000)
    display: dict[str, str] | None = None


class StatementObject(_Open):
    """An Activity (the default), an Agent or Group, a SubStatement or a StatementRef."""

    objectType: Literal["Activity", "Agent", "Group", "SubStatement", "StatementRef"] = (  # noqa: N815
        "Activity"
    )
    id: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> StatementObject:
        if self.objectType == "Activity" and not (self.id and re.match(IRI_PATTERN, self.id)):
            raise ValueError("an Activity object needs an 'id' that is an IRI")
        if self.objectType == "StatementRef" and not (self.id and re.match(_UUID, self.id)):
            raise ValueError("a StatementRef object needs an 'id' that is a UUID")
        return self


class Statement(BaseModel):
    """The statement properties of xAPI 1.0.3; any other top-level property is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str | None = Field(default=None, pattern=_UUID)
    actor: Actor
    verb: Verb
    object_: StatementObject = Field(alias="object")
    result: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    timestamp: AwareDatetime | None = None
    stored: AwareDatetime | None = None
    authority: dict[str, Any] | None = None
    version: str | None = Field(default=None, pattern=r"^1\.0(\.\d+)?$")
    attachments: list[dict[str, Any]] | None = None

    @field_validator("timestamp", "stored", mode="before")
    @classmethod
    def _utc_when_no_zone(cls, value: object) -> object:
        """A timestamp without a time zone is read as UTC, as xAPI allows."""
        if isinstance(value, str) and re.search(r"T[0-9:.]+$", value):
            return value + "Z"
        return value

    @field_validator("attachments")
    @classmethod
    def _no_raw_attachments(cls, value: list[dict[str, Any]] | None) -> object:
        """Attachments sent in the request (multipart) are not provided; by `fileUrl` they are."""
        if value and any("fileUrl" not in a for a in value):
            raise ValueError("only attachments with a fileUrl are accepted (no multipart)")
        return value
