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
"""

from __future__ import annotations

import asyncio

import structlog
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from dxtalent_infra.topology import ALL_STREAMS, StreamSpec, Topology

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW_RETRIES = 4


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
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        info = await js.add_stream(wanted)
        log.info("stream.created", stream=wanted.name, subjects=wanted.subjects)
        return info
    if info.config.storage != wanted.storage:
        raise ValueError(
            f"stream {wanted.name} uses {info.config.storage} storage, not {wanted.storage}; "
            "JetStream cannot change storage in place: move the data to a new stream"
        )
    if not _differs(info.config, wanted):
        return info
    updated = info.config.evolve(
        subjects=wanted.subjects,
        retention=wanted.retention,
        num_replicas=wanted.num_replicas,
        duplicate_window=wanted.duplicate_window,
    )
    info = await js.update_stream(updated)
    log.info(
        "stream.updated",
        stream=wanted.name,
        replicas=wanted.num_replicas,
        duplicate_window_s=wanted.duplicate_window,
    )
    return info


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
