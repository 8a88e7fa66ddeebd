"""Connecting to NATS the same way everywhere: reconnect forever, log every state change.

`connect_nats` is a plain nats-py client (publishers, tools); `nats_broker` the FastStream
broker that consumers subscribe on."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import nats
import structlog
from faststream.nats import NatsBroker
from nats.aio.client import Client

from dxtalent_infra.settings import nats_servers

log = structlog.get_logger(__name__)

#: The oldest nats-server the services accept: consumers with several filter subjects need
#: 2.10 (2.9 silently ignores the list and delivers the whole stream). Decision 0201.
MIN_SERVER_VERSION = (2, 10)


class UnsupportedServerError(RuntimeError):
    """The NATS server is older than `MIN_SERVER_VERSION`; upgrading it is the only fix."""


def require_server_version(nc: Client, minimum: tuple[int, int] = MIN_SERVER_VERSION) -> None:
    """Refuse a server older than `minimum` with an error saying what to run instead."""
    version = nc.connected_server_version
    if (version.major, version.minor) < minimum:
        raise UnsupportedServerError(
            f"nats-server {str(version).strip('<>')} at {nc.connected_url.netloc if nc.connected_url else '?'}"
            f" is too old: dxtalent needs nats-server {minimum[0]}.{minimum[1]} or later "
            "(consumers with several filter subjects); production should run 2.12.3 or later"
        )


async def connect_nats(
    url: str,
    *,
    name: str,
    user: str | None = None,
    password: str | None = None,
    creds: str | Path | None = None,
    tls_ca: str | Path | None = None,
    reconnect_wait_s: float = 1.0,
    connect_wait_s: float = 30.0,
) -> Client:
    """A NATS connection that reconnects forever (nats-py keeps unsent messages meanwhile).

    `url` is one server or a cluster's, separated by commas (`settings.nats_servers`).
    The first connection is retried for up to `connect_wait_s` seconds, so a service may
    start before the server. `creds` is a `.creds` file (JWT + NKey); `tls_ca` a CA bundle
    that turns TLS on.
    """
    log_ = log.bind(nats_name=name)

    async def on_error(exc: Exception) -> None:
        log_.warning("nats.error", error=repr(exc))

    made: list[Client] = []  # the connection, once made (callbacks may run before)

    async def on_disconnected() -> None:
        if made and made[0].is_closed:
            return  # an orderly close, not an outage
        log_.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log_.info("nats.reconnected")

    async def on_closed() -> None:
        log_.info("nats.closed")

    tls = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca is not None else None
    deadline = asyncio.get_running_loop().time() + connect_wait_s
    wait = 0.2
    while True:
        try:
            nc = await nats.connect(
                nats_servers(url),
                name=name,
                user=user,
                password=password,
                user_credentials=str(creds) if creds is not None else None,
                tls=tls,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=reconnect_wait_s,
                connect_timeout=5,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            if asyncio.get_running_loop().time() + wait > deadline:
                raise
            log_.warning("nats.connect_retry", url=url, error=repr(exc), retry_in=wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
            continue
        made.append(nc)
        log_.info("nats.connected", url=url, server_version=str(nc.connected_server_version))
        return nc


def broker_options(
    *,
    name: str,
    security: Any = None,
    inbox_prefix: str = "_INBOX",
    reconnect_wait_s: float = 1.0,
    graceful_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Options of a FastStream NATS broker (`NatsBroker` or FastAPI's `NatsRouter`): it
    reconnects forever, waits up to `graceful_timeout_s` for the batch in flight when
    stopping, takes its reply subjects under `inbox_prefix` (`Settings.inbox_prefix`; the pull
    subscribers follow it, see `broker_inbox_prefix`), and logs its line per message at DEBUG only (that access log cost ~40% of the rate);
    connection changes go to structlog as with `connect_nats`."""
    log_ = log.bind(nats_name=name)

    async def on_error(exc: Exception) -> None:
        log_.warning("nats.error", error=repr(exc))

    async def on_disconnected() -> None:
        log_.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log_.info("nats.reconnected")

    return {
        "name": name,
        "security": security,
        "inbox_prefix": inbox_prefix,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": reconnect_wait_s,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "graceful_timeout": graceful_timeout_s,
        # FastStream's own lines (a subscriber task failing and restarting) at their level;
        # its line per message at DEBUG, which costs nothing while DEBUG is off
        "logger": logging.getLogger("dxtalent.faststream"),
        "log_level": logging.DEBUG,
    }


def nats_broker(url: str, *, name: str, reconnect_wait_s: float = 1.0) -> NatsBroker:
    """A FastStream broker of its own (tools, tests, benchmarks): see `broker_options`."""
    return NatsBroker(
        nats_servers(url), **broker_options(name=name, reconnect_wait_s=reconnect_wait_s)
    )


def broker_inbox_prefix(broker: NatsBroker) -> bytes:
    """The inbox prefix (with its trailing dot) of the broker's connection, for its JetStream
    pull subscribers: FastStream gives each one `_INBOX.` unless told otherwise, which a user
    allowed only its own prefix may not subscribe to. Read from the broker's connection
    options, so `broker_options` stays the one place the prefix is set."""
    options: dict[str, Any] = getattr(broker, "_connection_kwargs", {})
    prefix = options.get("inbox_prefix", "_INBOX")
    raw = prefix.encode() if isinstance(prefix, str) else bytes(prefix)
    return raw + b"."


def broker_security(
    *, user: str | None, password: str | None, creds: Path | None, tls_ca: Path | None
) -> Any:
    """FastStream's security object for the service settings' NATS credentials, or None."""
    from faststream.nats import NatsCredentials, NatsSecurity, NatsUserPassword

    tls = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca is not None else None
    if creds is not None:
        return NatsCredentials(str(creds), ssl_context=tls)
    if user is not None:
        return NatsUserPassword(user, password or "", ssl_context=tls)
    return NatsSecurity(ssl_context=tls) if tls is not None else None


async def connect_broker(broker: Any, *, connect_wait_s: float = 30.0) -> None:
    """Connect a FastStream broker, retrying for up to `connect_wait_s` seconds (a service
    may start before the server)."""
    deadline = asyncio.get_running_loop().time() + connect_wait_s
    wait = 0.2
    while True:
        try:
            await broker.connect()
            return
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            if asyncio.get_running_loop().time() + wait > deadline:
                raise
            log.warning("nats.connect_retry", error=repr(exc), retry_in=wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
