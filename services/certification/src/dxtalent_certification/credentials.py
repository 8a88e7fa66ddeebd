"""Portable credentials, issued and revoked inside the certification handler's transaction.

`{schema}.credentials` holds each issued Open Badges 3.0 credential as its signed VC-JWT, with
its index in the revocation status list; `{schema}.credential_counter` hands out the indexes.
`CredentialIssuer.record` runs in the same transaction that appends the certification events
(see `handler`): a new certification (`LevelCertified` with `supersedes` null) issues one
credential, a `LevelRevoked` marks the employee's credential for that level revoked. So a
credential exists exactly when its event does; a redelivered fact emits nothing and so
issues nothing; a crash before commit leaves neither. A correction (`supersedes` set) issues
nothing: the level is the same achievement (docs/decisions/0150-credentials-in-the-handler.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from dxtalent_certification.domain.badges import credential_id, level_credential, valid_from
from dxtalent_certification.domain.decide import DomainChange
from dxtalent_certification.domain.issuer import Issuer
from dxtalent_certification.domain.status_list import LIST_SIZE
from dxtalent_certification.vcjwt import CredentialKeyError, Signer
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.events import LevelCertified, LevelRevoked
from dxtalent_infra.migrations import Migration, Privilege, quote_ident
from dxtalent_infra.records import NewEvent
from dxtalent_infra.settings import Settings

log = structlog.get_logger(__name__)

COMPONENT = "credentials"
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "credentials: issued Open Badges as VC-JWTs, with their status-list index",
        """
        CREATE TABLE {schema}.credentials (
            credential_id text PRIMARY KEY,
            employee_id text NOT NULL,
            level int NOT NULL,
            event_id text NOT NULL UNIQUE,
            status_index int NOT NULL UNIQUE,
            valid_from timestamptz NOT NULL,
            token text NOT NULL,
            revoked_at timestamptz,
            revoked_by text
        );
        CREATE INDEX credentials_by_employee ON {schema}.credentials (employee_id, level);
        CREATE TABLE {schema}.credential_counter (
            id int PRIMARY KEY CHECK (id = 1), next_index int NOT NULL
        );
        INSERT INTO {schema}.credential_counter VALUES (1, 0);
        """,
    ),
)

#: The service role's rights: issue and revoke credentials, take the next status index.
PRIVILEGES: tuple[Privilege, ...] = (
    Privilege("credentials", ("SELECT", "INSERT", "UPDATE")),
    Privilege("credential_counter", ("SELECT", "UPDATE")),
)

#: What `record` receives from the handler: per applied fact, its changes and their events.
Recorded = Sequence[tuple[list[tuple[str, DomainChange]], list[NewEvent]]]


class CredentialSettingsError(ValueError):
    """Credential settings that cannot work: one of the two set, or an unusable key file."""


@dataclass(frozen=True)
class StoredCredential:
    """One issued credential as stored."""

    credential_id: str
    level: int
    valid_from: dt.datetime
    token: str
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class StatusListRows:
    """What list `number` says: the revoked indexes in it and the time of its latest change."""

    revoked: list[int]
    as_of: dt.datetime


class CredentialIssuer:
    """Issues and revokes credentials in the caller's transaction (see the module docstring)."""

    def __init__(self, catalog: Catalog, issuer: Issuer, signer: Signer, schema: str) -> None:
        self.catalog, self.issuer, self.signer = catalog, issuer, signer
        q = quote_ident(schema)
        self._next = (
            f"UPDATE {q}.credential_counter SET next_index = next_index + 1"
            " WHERE id = 1 RETURNING next_index - 1"
        )
        self._insert = (
            f"INSERT INTO {q}.credentials (credential_id, employee_id, level, event_id,"
            " status_index, valid_from, token) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (credential_id) DO NOTHING"
        )
        self._revoke = (
            f"UPDATE {q}.credentials SET revoked_at = $3, revoked_by = $4"
            " WHERE employee_id = $1 AND level = $2 AND revoked_at IS NULL"
        )

    async def record(self, conn: asyncpg.Connection, recorded: Recorded) -> None:
        """Issue or revoke for each new certification or revocation among `recorded`."""
        for changes, events in recorded:
            for (event_id, change), new in zip(changes, events, strict=True):
                if isinstance(change, LevelCertified) and change.supersedes is None:
                    await self._issue(conn, event_id, change)
                elif isinstance(change, LevelRevoked):
                    await conn.execute(
                        self._revoke, change.employee_id, change.level, new.occurred_at, event_id
                    )

    async def _issue(self, conn: asyncpg.Connection, event_id: str, change: LevelCertified) -> None:
        index: int = await conn.fetchval(self._next)
        credential = level_credential(self.catalog, self.issuer, event_id, change, index)
        token = self.signer.sign(credential)
        start = valid_from(change.certified_on)
        args = (change.employee_id, change.level, event_id, index, start, token)
        await conn.execute(self._insert, credential_id(event_id), *args)
        log.info("credential.issued", level=change.level, status_index=index)


class PostgresCredentials:
    """Reads of the `credentials` table: one employee's, and one status list's."""

    def __init__(self, schema: str) -> None:
        t = f"{quote_ident(schema)}.credentials"
        self._by_employee = (
            f"SELECT credential_id, level, valid_from, token, revoked_at FROM {t}"
            " WHERE employee_id = $1 ORDER BY status_index"
        )
        self._status = (
            f"SELECT count(*), min(valid_from), max(revoked_at),"
            f" coalesce(array_agg(status_index) FILTER (WHERE revoked_at IS NOT NULL), '{{}}')"
            f" FROM {t} WHERE status_index >= $1 AND status_index < $2"
        )

    async def of_employee(
        self, conn: asyncpg.Connection, employee_id: str
    ) -> list[StoredCredential]:
        """The employee's credentials, oldest first."""
        return [StoredCredential(*r) for r in await conn.fetch(self._by_employee, employee_id)]

    async def status_list(self, conn: asyncpg.Connection, number: int) -> StatusListRows | None:
        """List `number` (from 1), or None when no credential has an index in it. It changes
        when a credential in it is revoked; before any, it dates from its first credential."""
        first = (number - 1) * LIST_SIZE
        record = await conn.fetchrow(self._status, first, first + LIST_SIZE)
        assert record is not None  # an aggregate always returns its row
        count, first_valid, last_revoked, revoked = record
        if count == 0:
            return None
        return StatusListRows(sorted(revoked), last_revoked or first_valid)


def credential_issuer(settings: Settings, catalog: Catalog, schema: str) -> CredentialIssuer | None:
    """The issuer `DXT_CREDENTIAL_KEY_FILE` and `DXT_CREDENTIAL_ISSUER` configure; None (no
    credentials) when both are unset."""
    key_file, issuer_id = settings.credential_key_file, settings.credential_issuer
    if key_file is None and issuer_id is None:
        return None
    if key_file is None or issuer_id is None:
        missing = "DXT_CREDENTIAL_KEY_FILE" if key_file is None else "DXT_CREDENTIAL_ISSUER"
        raise CredentialSettingsError(f"{missing} is unset: set both credential settings, or none")
    try:
        signer = Signer.from_pem(key_file.read_bytes(), str(key_file))
    except OSError as exc:
        raise CredentialSettingsError(f"{key_file}: cannot read the key: {exc.strerror}") from None
    except CredentialKeyError as exc:
        raise CredentialSettingsError(str(exc)) from None
    issuer = Issuer(issuer_id.rstrip("/"), catalog.municipality.name)
    return CredentialIssuer(catalog, issuer, signer, schema)
