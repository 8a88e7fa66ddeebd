"""Dead letters: the `MessageRejected` event of a message that can never be applied.

Its id is derived from the message key, so publishing it twice (a crash between publishing
and acknowledging the original) is de-duplicated by JetStream.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from dxtalent_contracts.envelope import CONTENT_TYPE
from dxtalent_contracts.events import FieldError, MessageRejected, MessageRejectedEvent
from dxtalent_infra.delivery import MAX_EVENT_ID, MSG_ID_HEADER, Delivery, trace_ids


def dead_letter_event(
    delivery: Delivery,
    *,
    reason: str,
    errors: Sequence[FieldError],
    source: str,
    now: dt.datetime,
) -> MessageRejectedEvent:
    """The `MessageRejected` dead letter of `delivery`."""
    event_id = f"rejected-{delivery.message_key}"
    if len(event_id) > MAX_EVENT_ID:
        event_id = "rejected-sha256-" + hashlib.sha256(delivery.message_key.encode()).hexdigest()
    ids = trace_ids(delivery.data)
    original_id = ids.get("event_id")
    return MessageRejectedEvent(
        specversion="1.0",
        id=event_id,
        source=source,
        type="dxtalent.enrollment.MessageRejected.v1",
        time=now,
        causationid=original_id,
        correlationid=ids.get("correlation_id", original_id),
        data=MessageRejected(
            subject=delivery.subject,
            reason=reason,
            errors=list(errors),
            original_base64=base64.b64encode(delivery.data).decode("ascii"),
            original_headers=dict(delivery.headers),
            received_at=delivery.received_at,
        ),
    )


async def publish_dead_letter(js: Any, wire_subject: str, event: MessageRejectedEvent) -> None:
    """Publish `event` on `wire_subject` and wait for JetStream to store it."""
    headers = {MSG_ID_HEADER: event.id, "Content-Type": CONTENT_TYPE}
    await js.publish(wire_subject, event.to_json_bytes(), headers=headers)
