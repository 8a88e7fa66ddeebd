"""Settling a batch in two halves: the applied acknowledged at once, a dead-lettered original
only once JetStream has stored its letter, and never when that failed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from dxtalent_infra.applier import BatchOutcome, DeadLetter
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.settle import Settling, acknowledge, settle_dead

WHO = Settling("unit", "dx.deadletter.inbound", "urn:test", structlog.get_logger())


class Journal:
    """What happened, in order: publishes and acknowledgements."""

    def __init__(self, fail: bool = False) -> None:
        self.entries: list[str] = []
        self.fail = fail

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        if self.fail:
            raise TimeoutError("JetStream did not answer")
        self.entries.append(f"publish {headers['Nats-Msg-Id']}")


class Msg:
    def __init__(self, key: str, journal: Journal) -> None:
        self.key, self.journal = key, journal

    async def ack(self) -> None:
        self.journal.entries.append(f"ack {self.key}")

    async def nak(self, delay: float) -> None:
        self.journal.entries.append(f"nak {self.key} {delay}")


def _batch(journal: Journal) -> tuple[list[Any], list[Delivery], BatchOutcome]:
    keys = ["m-0", "m-1", "m-2", "m-3"]
    msgs: list[Any] = [Msg(k, journal) for k in keys]
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    deliveries = [
        Delivery("dx.inbound.completion", b"{}", {"Nats-Msg-Id": k}, i + 1, 1, k, now)
        for i, k in enumerate(keys)
    ]
    outcome = BatchOutcome(
        applied=[0], duplicates=[3], retry=[(2, 0.5)], dead=[DeadLetter(1, "bad", [], "rejected")]
    )
    return msgs, deliveries, outcome


async def test_the_applied_are_acknowledged_without_waiting_for_the_dead_letters() -> None:
    journal = Journal()
    msgs, deliveries, outcome = _batch(journal)
    await acknowledge(msgs, outcome, WHO)
    assert journal.entries == ["ack m-0", "ack m-3", "nak m-2 0.5"]
    await settle_dead(journal, msgs, deliveries, outcome, WHO)
    assert journal.entries[3:] == ["publish rejected-m-1", "ack m-1"]


async def test_an_original_whose_dead_letter_was_not_stored_stays_unacknowledged() -> None:
    journal = Journal(fail=True)
    msgs, deliveries, outcome = _batch(journal)
    await settle_dead(journal, msgs, deliveries, outcome, WHO)
    assert journal.entries == []  # redelivered after ack_wait, and dead-lettered again
