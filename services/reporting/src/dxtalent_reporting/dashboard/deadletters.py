"""Dead letters for the data-intake page, read on demand from the `DX_DEADLETTER` stream.

The stream is the record of what every service rejected; the page reads its newest `limit`
messages by sequence (a direct get per message, no consumer, no state kept here), newest
first. A message whose body is not a `MessageRejected` is still listed, with what is wrong.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from nats.js.errors import NotFoundError
from pydantic import ValidationError

from dxtalent_contracts.events import MessageRejected
from dxtalent_contracts.fiscal import JST
from dxtalent_infra.topology import Topology


@dataclass(frozen=True)
class DeadLetter:
    """One rejected message: where it came from, why, and when."""

    sequence: int
    service_subject: str
    received_at: dt.datetime | None
    original_subject: str
    reason: str
    problems: str


def _letter(sequence: int, subject: str, data: bytes) -> DeadLetter:
    try:
        body = MessageRejected.model_validate_json(_data_of(data))
    except (ValidationError, ValueError) as exc:
        return DeadLetter(sequence, subject, None, "", "読めない dead letter", str(exc)[:200])
    problems = "; ".join(f"{e.field}: {e.problem}" for e in body.errors)
    return DeadLetter(
        sequence,
        subject,
        body.received_at.astimezone(JST),
        body.subject,
        body.reason,
        problems,
    )


def _data_of(envelope: bytes) -> bytes:
    """The `data` member of a CloudEvent envelope, as JSON bytes."""
    return json.dumps(json.loads(envelope)["data"]).encode()


async def newest_dead_letters(js: Any, topology: Topology, limit: int = 100) -> list[DeadLetter]:
    """Up to `limit` dead letters, newest first."""
    stream = topology.stream("DX_DEADLETTER")
    state = (await js.stream_info(stream)).state
    letters: list[DeadLetter] = []
    sequence = state.last_seq
    while sequence >= max(state.first_seq, 1) and len(letters) < limit:
        try:
            msg = await js.get_msg(stream, sequence)
        except NotFoundError:  # deleted or expired in the middle of the stream
            sequence -= 1
            continue
        subject = topology.contract_subject(msg.subject or "")
        letters.append(_letter(sequence, subject, msg.data or b""))
        sequence -= 1
    return letters
