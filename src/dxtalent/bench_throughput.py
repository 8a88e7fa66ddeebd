"""`dxtalent bench throughput`: facts per second end to end, against a bare stage on the same
servers in the same run.

Each run starts the servers (embedded unless DXT_NATS_URL / DXT_DATABASE_URL) and the three
services as `dxtalent demo` does, publishes the generated city's facts, and times from the
first publish until every service reports `caught_up` (`GET /v1/status`, polled every 0.1 s,
three checks in a row; the time is that of the first of them). The services' resident memory
is sampled meanwhile. Then, on the same servers, the same number of facts goes through the
bare single stage (`bench_stage`). Printed: both rates, their ratio and the largest resident
memory of each service, per run, then min / median / max over the runs; and where the CPU went
while the city went through: microseconds of CPU per fact for each service, the embedded
servers (PostgreSQL with its backends) and the bench itself (publishing, polling), and how
many of the machine's cores they kept busy together.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
import uvloop
from rich.console import Console
from rich.table import Table

from dxtalent.bench_stage import bare_stage_rate
from dxtalent.citygen import generate_city
from dxtalent.demo import DEMO_SEED
from dxtalent.figures import spread
from dxtalent.nats_tools import subject_for
from dxtalent.processes import cpu_seconds_with_own, rss_mb
from dxtalent.stack import SERVICES, LocalStack, messages_per_batch, running_stack
from dxtalent_contracts.catalog import load_catalog
from dxtalent_infra.publisher import BatchPublisher, Outgoing


@dataclass
class RunFigures:
    """What one run measured."""

    facts: int
    end_to_end: float  # facts/s
    bare: float  # facts/s
    rss_mb: dict[str, float] = field(default_factory=dict)  # largest seen, per service
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU µs per fact, end to end
    cores: float = 0.0  # cores kept busy end to end, all of `cpu_us` together
    batch: dict[str, float] = field(default_factory=dict)  # mean messages per batch, end to end

    @property
    def ratio(self) -> float:
        return self.end_to_end / self.bare


def _caught_up_at(stack: LocalStack, rss: dict[str, float], timeout: float) -> float:
    """Poll until every service is caught up three checks in a row; the first check's time.
    Samples the services' memory into `rss` meanwhile."""
    deadline = time.monotonic() + timeout
    streak_start: float | None = None
    streak = 0
    while time.monotonic() < deadline:
        now = time.monotonic()
        for name, svc in stack.services.items():
            rss[name] = max(rss.get(name, 0.0), rss_mb(svc.proc.pid))
        if all(stack.ready().values()):
            streak_start = now if streak == 0 else streak_start
            streak += 1
            if streak >= 3 and streak_start is not None:
                return streak_start
        else:
            streak = 0
        time.sleep(0.1)
    raise TimeoutError(f"services not caught up within {timeout}s: {stack.ready()}")


async def _publish_all(nats_url: str, messages: Sequence[bytes]) -> None:
    """Publish the facts to their inbound subjects, a thousand at a time, pipelined, every ack
    awaited (minutes at most on a busy machine), through the relays' `BatchPublisher`: the
    load generator shares the machine with what it measures, and nats-py's `publish_async`
    cost it about 60 µs of CPU per fact (`bench throughput` prints it as "bench")."""
    nc = await nats.connect(nats_url, name="dxtalent-bench-publish")
    publisher = BatchPublisher(nc, timeout=300)
    try:
        for start in range(0, len(messages), 1000):
            batch: list[Outgoing] = []
            for raw in messages[start : start + 1000]:
                subject, event_id = subject_for(raw)
                batch.append((subject, event_id or "", raw, {}))
            await publisher.publish(batch)
    finally:
        await publisher.close()
        await nc.close()


def one_run(console: Console, messages: Sequence[bytes]) -> RunFigures:
    """One end-to-end run and one bare-stage run on the same fresh servers."""
    data_dir = Path(tempfile.mkdtemp(prefix="dxtalent-bench-tp-"))
    try:
        stack = LocalStack(
            data_dir, os.environ.get("DXT_NATS_URL"), os.environ.get("DXT_DATABASE_URL")
        )
        with running_stack(stack):
            stack.wait_ready(timeout=120, settle_checks=1)
            rss: dict[str, float] = {}
            cpu_before = cpu_seconds_with_own(stack.process_roots())
            batches_before = stack.batch_totals()
            started = time.monotonic()
            uvloop.run(_publish_all(str(stack.nats_url), messages))
            done = _caught_up_at(stack, rss, timeout=1800)
            cpu_after = cpu_seconds_with_own(
                stack.process_roots()
            )  # a few polls after `done`: a little idle time
            batch = messages_per_batch(batches_before, stack.batch_totals())
            end_to_end = len(messages) / (done - started)
            spent = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
            cpu_us = {k: 1e6 * v / len(messages) for k, v in spent.items()}
            cores = sum(spent.values()) / (time.monotonic() - started)
            console.print(f"  end to end: {end_to_end:,.0f} facts/s; now the bare stage")
            bare = uvloop.run(
                bare_stage_rate(str(stack.nats_url), str(stack.database_url), messages)
            )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return RunFigures(len(messages), end_to_end, bare, rss, cpu_us, cores, batch)


def run_throughput_bench(console: Console, *, staff: int, runs: int, seed: int = DEMO_SEED) -> None:
    """Generate the city, run `runs` times, print each run and min / median / max."""
    city = generate_city(load_catalog(), seed=seed, staff=staff)
    messages = [e.to_json_bytes() for e in city.events]
    console.print(
        f"{staff} staff (seed {seed}): {len(messages)} facts; {runs} run(s), each on fresh "
        "servers: the city end to end, then the bare stage (consume → one batched upsert + "
        "checkpoint → publish → ack, uvloop) on the same servers"
    )
    figures: list[RunFigures] = []
    for i in range(runs):
        fig = one_run(console, messages)
        figures.append(fig)
        memory = ", ".join(f"{name} {fig.rss_mb.get(name, 0):.0f}" for name in SERVICES)
        cpu = ", ".join(f"{name} {us:,.0f}" for name, us in fig.cpu_us.items())
        console.print(
            f"run {i + 1}: end to end {fig.end_to_end:,.0f} facts/s, bare stage "
            f"{fig.bare:,.0f} facts/s, ratio {fig.ratio:.2f}; largest RSS MB: {memory}; "
            f"CPU µs per fact: {cpu} ({fig.cores:.2f} cores busy); messages per batch: "
            + ", ".join(f"{name} {size:,.1f}" for name, size in fig.batch.items())
        )
    table = Table(title=f"throughput, {len(messages)} facts, min / median / max of {runs}")
    table.add_column("measure")
    table.add_column("min / median / max", justify="right")
    table.add_row("end to end (facts/s)", spread([f.end_to_end for f in figures], ",.0f"))
    table.add_row("bare stage (facts/s)", spread([f.bare for f in figures], ",.0f"))
    table.add_row("ratio", spread([f.ratio for f in figures], ".2f"))
    for name in SERVICES:
        table.add_row(f"RSS {name} (MB)", spread([f.rss_mb.get(name, 0) for f in figures], ".0f"))
    for name in figures[0].cpu_us:
        us = [f.cpu_us.get(name, 0.0) for f in figures]
        table.add_row(f"CPU {name} (µs per fact)", spread(us, ",.0f"))
    table.add_row(
        "CPU all (µs per fact)", spread([sum(f.cpu_us.values()) for f in figures], ",.0f")
    )
    table.add_row("cores busy", spread([f.cores for f in figures], ".2f"))
    for name in figures[0].batch:
        sizes = [f.batch.get(name, 0.0) for f in figures]
        table.add_row(f"messages per batch, {name}", spread(sizes, ",.1f"))
    console.print(table)
