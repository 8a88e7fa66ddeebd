"""A subscribing team's app: one notice per new DX-leader certification, kept up to date.

It reads `LevelCertified` events from the dxtalent stream `DX_EVENTS` with a durable JetStream
pull consumer of its own, and never changes the stream. Each event is handled once, by its
CloudEvents (`source`, `id`), because delivery is at least once. Copy this file and change
`NoticeBook.record` to do what your team does. Run it with `python app.py` (README.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.js.api import AckPolicy as ConsumerAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from dxtalent_contracts import STREAM_EVENTS, LevelCertifiedEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handled (source TEXT, id TEXT, PRIMARY KEY (source, id));
CREATE TABLE IF NOT EXISTS certifications (
    employee_id TEXT, level INTEGER, certified_on TEXT, department_code TEXT, event_id TEXT,
    PRIMARY KEY (employee_id, level));
"""


@dataclass(frozen=True)
class Settings:
    """Where to connect and what to call things."""

    nats_url: str
    #: The deployment's prefix (DXT_PREFIX of dxtalent), empty for the contract's own names.
    prefix: str
    durable: str
    state_dir: Path

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            nats_url=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
            prefix=os.environ.get("DX_PREFIX", ""),
            durable=os.environ.get("DURABLE_NAME", "example-notices"),
            state_dir=Path(os.environ.get("STATE_DIR", ".")),
        )

    @property
    def stream(self) -> str:
        return f"{self.prefix.upper()}_{STREAM_EVENTS}" if self.prefix else STREAM_EVENTS

    @property
    def subject(self) -> str:
        subject = LevelCertifiedEvent.nats_subject
        return f"{self.prefix}.{subject}" if self.prefix else subject


class NoticeBook:
    """What the team keeps: each certification (one row per employee and level), the id of
    every event handled, and `actions.jsonl`, one line per thing done."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_dir / "notices.sqlite3", check_same_thread=False)
        self._db.executescript(_SCHEMA)
        self._log = state_dir / "actions.jsonl"

    def record(self, event: LevelCertifiedEvent) -> str | None:
        """Handle one event once: "new-certification" (send the notice), "correction" (update
        what is held for the employee and level), or None for an event already handled."""
        cert = event.data
        with self._db:  # one transaction: the event id and its effect, or neither
            first_time = self._db.execute(
                "INSERT OR IGNORE INTO handled VALUES (?, ?)", (event.source, event.id)
            ).rowcount
            if not first_time:
                return None
            self._db.execute(
                "INSERT INTO certifications VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " certified_on = excluded.certified_on, department_code ="
                " excluded.department_code, event_id = excluded.event_id",
                (
                    cert.employee_id,
                    cert.level,
                    cert.certified_on.isoformat(),
                    cert.department_code,
                    event.id,
                ),
            )
        # A correction has `supersedes` set; a new certification (also one certified again
        # after a revocation) has not: only that one gets a notice.
        action = "new-certification" if cert.supersedes is None else "correction"
        line = {
            "action": action,
            "event_id": event.id,
            "supersedes": cert.supersedes,
            "employee_id": cert.employee_id,
            "level": cert.level,
            "certified_on": cert.certified_on.isoformat(),
        }
        with self._log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
        return action


def build_app(settings: Settings) -> FastStream:
    """The broker, its one subscriber and the app that runs them."""
    broker = NatsBroker(settings.nats_url)
    book = NoticeBook(settings.state_dir)
    logger = logging.getLogger("notices")

    @broker.subscriber(
        settings.subject,
        # bind to the existing stream; FastStream must not create or update it
        stream=JStream(settings.stream, declare=False),
        durable=settings.durable,
        # one message per fetch: FastStream runs the messages of one fetch concurrently, and
        # one at a time keeps each employee's events in the order they were published
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(
            durable_name=settings.durable,
            deliver_policy=DeliverPolicy.ALL,  # from the start of history, on first start
            ack_policy=ConsumerAckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=5,
        ),
        # acked after the handler returns; a failure is redelivered, never silently dropped
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_level_certified(event: LevelCertifiedEvent) -> None:
        action = await asyncio.to_thread(book.record, event)
        logger.info(
            "%s %s level %s: %s",
            event.id,
            event.data.employee_id,
            event.data.level,
            action or "already handled",
        )

    return FastStream(broker)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(build_app(Settings.from_env()).run())
