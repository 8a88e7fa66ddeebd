"""Stream and subject names, with an optional prefix that keeps tests and tenants apart.

With the empty prefix the names are exactly the public contract's (`DX_INBOUND`,
`dx.inbound.>`). A prefix `t1a2b` turns them into `T1A2B_DX_INBOUND` and `t1a2b.dx.inbound.>`,
so parallel tests on one NATS server never see each other's messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dxtalent_contracts import subjects

_PREFIX = re.compile(r"^[a-z0-9]{0,32}$")


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream: its contract name and the contract subjects it captures."""

    name: str
    subjects: tuple[str, ...]


INBOUND = StreamSpec("DX_INBOUND", (subjects.INBOUND_ALL,))
EVENTS = StreamSpec("DX_EVENTS", (subjects.EVENTS_ALL,))
DEADLETTER = StreamSpec("DX_DEADLETTER", (subjects.DEADLETTER_ALL,))
ALL_STREAMS = (INBOUND, EVENTS, DEADLETTER)


@dataclass(frozen=True)
class Topology:
    """Maps contract names to the names used on this NATS server."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(
                f"topology prefix {self.prefix!r} must be 0-32 lowercase letters or digits"
            )

    def subject(self, contract_subject: str) -> str:
        """`dx.inbound.completion` -> the subject on the wire."""
        return f"{self.prefix}.{contract_subject}" if self.prefix else contract_subject

    def contract_subject(self, wire_subject: str) -> str:
        """The inverse of `subject`: strip the prefix again."""
        if self.prefix and wire_subject.startswith(self.prefix + "."):
            return wire_subject[len(self.prefix) + 1 :]
        return wire_subject

    def stream(self, contract_stream: str) -> str:
        """`DX_INBOUND` -> the stream name on this server."""
        return f"{self.prefix.upper()}_{contract_stream}" if self.prefix else contract_stream

    def durable(self, name: str) -> str:
        """A durable consumer name (consumers live inside their stream, the prefix is for logs)."""
        return name
