"""The three JetStream streams of the contract: created or updated idempotently by the
provisioning step (`dxtalent provision`, with the admin credential), and checked by the services
at start-up (`await_streams`), which have no right to change them (decision 0180).

`DX_INBOUND` (`dx.inbound.>`), `DX_EVENTS` (`dx.events.>`) and `DX_DEADLETTER`
(`dx.deadletter.>`), named through the `Topology`: file storage, limits retention, a
duplicate window and a configurable replica count.

The duplicate window is what turns the outbox relay's at-least-once publishing into
exactly-once storage: a relay that published a batch but died (or lost PostgreSQL) before
marking it done publishes it again once it can, and JetStream drops the copies only while
the first copies are younger than the window. The relay retries every `max_backoff` seconds
at most, so the window must span several of those retries: `ensure_streams` refuses a window
shorter than `DUPLICATE_WINDOW_RETRIES` × the relay's `max_backoff`.

The replica count (`DXT_STREAM_REPLICAS`) is checked, not trusted: a stream that JetStream
keeps with fewer replicas than asked for — a single server, a cluster with fewer JetStream
servers, a stream left at R1 by an earlier start — is a `ReplicasError` saying so.
"""

from __future__ import annotations

import asyncio

import structlog
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from dxtalent_infra.topology import ALL_STREAMS, StreamSpec, Topology

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW_RETRIES = 4

#: JetStream's error codes for "cannot place this many replicas".
_REPLICAS_NOT_SUPPORTED = 10074  # replicas > 1 not supported in non-clustered mode
_NO_PLACEMENT = frozenset({10005, 10023})  # no suitable peers for placement; insufficient resources


class ReplicasError(ValueError):
    """The streams cannot have the replicas asked for (DXT_STREAM_REPLICAS)."""


def _replicas_refused(name: str, replicas: int, exc: APIError) -> ReplicasError | None:
    """The ReplicasError for JetStream's refusal to place `replicas` copies, else None."""
    if exc.err_code == _REPLICAS_NOT_SUPPORTED:
        where = "a single NATS server without a cluster"
    elif exc.err_code in _NO_PLACEMENT:
        where = f"a NATS cluster with fewer than {replicas} JetStream servers up"
    else:
        return None
    return ReplicasError(
        f"stream {name}: DXT_STREAM_REPLICAS={replicas}, but JetStream runs on {where} "
        f"({exc.description}); set DXT_STREAM_REPLICAS to at most the number of JetStream "
        "servers of the cluster (1 for a single server)"
    )


def _check_replicas(info: api.StreamInfo, replicas: int) -> api.StreamInfo:
    """The stream is configured with `replicas` copies (a server may keep fewer than asked).
    Peers added by an update join in the background; JetStream places them."""
    kept = info.config.num_replicas or 1
    if kept != replicas:
        raise ReplicasError(
            f"stream {info.config.name} has {kept} replica(s), not the {replicas} of "
            f"DXT_STREAM_REPLICAS; run it on a NATS cluster of at least {replicas} JetStream "
            f"servers, or set DXT_STREAM_REPLICAS={kept}"
        )
    return info


def stream_config(
    spec: StreamSpec, topology: Topology, *, replicas: int, duplicate_window_s: float
) -> api.StreamConfig:
    """The configuration `spec` should have on this server."""
    return api.StreamConfig(
        name=topology.stream(spec.name),
        subjects=[topology.subject(s) for s in spec.subjects],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
    )


def _differs(current: api.StreamConfig, wanted: api.StreamConfig) -> bool:
    return (
        sorted(current.subjects or []) != sorted(wanted.subjects or [])
        or current.retention != wanted.retention
        or current.num_replicas != wanted.num_replicas
        or abs((current.duplicate_window or 0) - wanted.duplicate_window) > 1e-6
    )


async def ensure_stream(js: JetStreamContext, wanted: api.StreamConfig) -> api.StreamInfo:
    """Create the stream, or update it when its configuration differs; returns its info."""
    assert wanted.name is not None
    replicas = wanted.num_replicas or 1
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        try:
            info = await js.add_stream(wanted)
        except APIError as exc:
            raise _replicas_refused(wanted.name, replicas, exc) or exc from None
        log.info("stream.created", stream=wanted.name, subjects=wanted.subjects, replicas=replicas)
        return _check_replicas(info, replicas)
    if info.config.storage != wanted.storage:
        raise ValueError(
            f"stream {wanted.name} uses {info.config.storage} storage, not {wanted.storage}; "
            "JetStream cannot change storage in place: move the data to a new stream"
        )
    if not _differs(info.config, wanted):
        return _check_replicas(info, replicas)
    updated = info.config.evolve(
        subjects=wanted.subjects,
        retention=wanted.retention,
        num_replicas=wanted.num_replicas,
        duplicate_window=wanted.duplicate_window,
    )
    try:
        info = await js.update_stream(updated)
    except APIError as exc:
        raise _replicas_refused(wanted.name, replicas, exc) or exc from None
    log.info(
        "stream.updated",
        stream=wanted.name,
        replicas=wanted.num_replicas,
        duplicate_window_s=wanted.duplicate_window,
    )
    return _check_replicas(info, replicas)


async def ensure_streams(
    js: JetStreamContext,
    topology: Topology,
    *,
    replicas: int = 1,
    duplicate_window_s: float = 600.0,
    relay_max_backoff_s: float = 30.0,
) -> list[api.StreamInfo]:
    """Create or update DX_INBOUND, DX_EVENTS and DX_DEADLETTER; safe to call at every start."""
    if duplicate_window_s < DUPLICATE_WINDOW_RETRIES * relay_max_backoff_s:
        raise ValueError(
            f"duplicate window {duplicate_window_s}s is shorter than {DUPLICATE_WINDOW_RETRIES} "
            f"outbox relay retries of {relay_max_backoff_s}s: events republished after a "
            "failure could be stored twice"
        )
    return [
        await ensure_stream(
            js,
            stream_config(spec, topology, replicas=replicas, duplicate_window_s=duplicate_window_s),
        )
        for spec in ALL_STREAMS
    ]


class StreamsMissingError(RuntimeError):
    """The streams a service needs are not there: nobody provisioned them."""


async def await_streams(
    js: JetStreamContext,
    topology: Topology,
    *,
    replicas: int = 1,
    duplicate_window_s: float = 600.0,
    wait_s: float = 60.0,
) -> list[api.StreamInfo]:
    """A service's start without stream-admin rights: wait up to `wait_s` for the three
    streams to exist (a provisioning job may run beside the services), reading their info only.
    A stream whose configuration differs from the settings is logged, not changed: that is
    `dxtalent provision`'s work."""
    deadline = asyncio.get_running_loop().time() + wait_s
    infos: list[api.StreamInfo] = []
    for spec in ALL_STREAMS:
        wanted = stream_config(
            spec, topology, replicas=replicas, duplicate_window_s=duplicate_window_s
        )
        assert wanted.name is not None
        while True:
            try:
                info = await js.stream_info(wanted.name)
                break
            except NotFoundError:
                if asyncio.get_running_loop().time() >= deadline:
                    raise StreamsMissingError(
                        f"stream {wanted.name} does not exist: run `dxtalent provision` with "
                        "the admin NATS credential (or set DXT_PROVISION_STREAMS=true on a "
                        "server without permissions)"
                    ) from None
                log.warning("stream.missing", stream=wanted.name, hint="dxtalent provision")
                await asyncio.sleep(1.0)
        if _differs(info.config, wanted):
            log.warning(
                "stream.config_differs",
                stream=wanted.name,
                replicas=info.config.num_replicas,
                wanted_replicas=replicas,
                hint="dxtalent provision updates it",
            )
        infos.append(info)
    return infos
