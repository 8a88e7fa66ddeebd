"""Corrections: which of `decide`'s changes are sent, and which earlier event each one replaces.

A `LevelCertified` is keyed by its level, a `SkillAcquired` by its skill (one employee's
ledger holds that employee's keys). `SentLedger` remembers, per key, the id and the data of
the last event sent. `mark` then, change by change in `decide`'s order:

- drops a `LevelCertified` / `SkillAcquired` whose data (apart from `supersedes`) equals the
  last one sent for its key: an event is never sent twice with the same data;
- sets `supersedes` to the id of the last one sent for its key, or leaves it `None` when the
  key holds nothing: a new level or skill, or one certified again after being revoked;
- clears the key of a `LevelRevoked` / `SkillRevoked`, which is always sent.

Each change arrives with the id it will be sent under, chosen by the caller from the causing
event and the change's place in `decide`'s list: dropping one never shifts another's id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from dxtalent_certification.domain.decide import DomainChange
from dxtalent_contracts.events import LevelCertified, LevelRevoked, SkillAcquired, SkillRevoked


@dataclass(frozen=True, slots=True)
class SentEvent:
    """The last event sent for a key: its id and its JSON data without `supersedes`."""

    event_id: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SentLedger:
    """One employee's last sent `LevelCertified` per level and `SkillAcquired` per skill,
    by `key_of`. Immutable: the mapping given is copied into a read-only view, by key."""

    entries: Mapping[str, SentEvent]

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(sorted(self.entries.items()))))

    @classmethod
    def empty(cls) -> SentLedger:
        """Nothing sent yet."""
        return cls({})


def key_of(change: DomainChange) -> str:
    """The key a change is about: `level:<n>` or `skill:<code>`."""
    match change:
        case LevelCertified() | LevelRevoked():
            return f"level:{change.level}"
        case SkillAcquired() | SkillRevoked():
            return f"skill:{change.skill}"


def sent_data(change: DomainChange) -> dict[str, Any]:
    """What the ledger compares: the change's JSON data without `supersedes`. (The whole dump
    with `supersedes` taken out after costs less than pydantic's `exclude`: once per change.)"""
    data = change.model_dump(mode="json")
    data.pop("supersedes", None)
    return data


def mark(
    changes: Sequence[DomainChange], ids: Sequence[str], ledger: SentLedger
) -> tuple[list[tuple[str, DomainChange]], SentLedger]:
    """The changes to send, each with its id and `supersedes` set, and the ledger after them.

    `ids[i]` is the id `changes[i]` is sent under (see the module docstring). When nothing is
    sent the ledger returned is `ledger` itself (nothing in it changed).
    """
    kept, _, after = mark_with_data(changes, ids, ledger)
    return kept, after


def mark_with_data(
    changes: Sequence[DomainChange], ids: Sequence[str], ledger: SentLedger
) -> tuple[list[tuple[str, DomainChange]], list[dict[str, Any]], SentLedger]:
    """`mark`, with each change's JSON data (`model_dump(mode="json")` of the change sent) in
    a list beside the changes: the handler sends that data, and each change is dumped once.

    A certified level or acquired skill's data is its ledger data with `supersedes` added
    (the last field of both models, so even the order of the keys is `model_dump`'s); the
    nested values are shared with the ledger entry, and neither is ever modified."""
    if len(ids) != len(changes):
        raise ValueError(f"{len(changes)} changes but {len(ids)} ids")
    entries = dict(ledger.entries)
    kept: list[tuple[str, DomainChange]] = []
    datas: list[dict[str, Any]] = []
    for event_id, change in zip(ids, changes, strict=True):
        key = key_of(change)
        if isinstance(change, LevelRevoked | SkillRevoked):
            entries.pop(key, None)
            kept.append((event_id, change))
            datas.append(change.model_dump(mode="json"))
            continue
        data, last = sent_data(change), entries.get(key)
        if last is not None and last.data == data:
            continue
        supersedes = last.event_id if last is not None else None
        # a first one (None) is sent as it is: no copy
        same = change.supersedes == supersedes
        kept.append(
            (event_id, change if same else change.model_copy(update={"supersedes": supersedes}))
        )
        datas.append({**data, "supersedes": supersedes})
        entries[key] = SentEvent(event_id, data)
    return kept, datas, SentLedger(entries) if kept else ledger
