"""What the e2e tests compare: the services' answers, read over HTTP and NATS only."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from dxtalent.expected import (
    department_counts,
    expected_departments,
    expected_progress,
    expected_states,
    served_department_counts,
)
from dxtalent.stack import LocalStack, http_json
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import fiscal_year_end
from dxtalent_contracts.inbound import InboundEvent
from dxtalent_infra.settings import nats_servers
from dxtalent_infra.topology import EVENTS, Topology


async def publish_with_ids(
    nats_url: str, topology: Topology, items: Sequence[tuple[str, bytes, str]]
) -> None:
    """Publish (contract subject, bytes, Nats-Msg-Id) triples, awaiting every ack."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for start in range(0, len(items), 256):
        acks = [
            js.publish(topology.subject(subject), raw, headers={"Nats-Msg-Id": msg_id})
            for subject, raw, msg_id in items[start : start + 256]
        ]
        for ack in acks:
            await ack
    await nc.drain()


async def events_on(
    nats_url: str, topology: Topology, contract_subject: str
) -> list[dict[str, object]]:
    """Every CloudEvent on a DX_EVENTS subject, from the start of history (`nats_url`: one
    server or a cluster's, comma-separated)."""
    nc = await nats.connect(nats_servers(nats_url))
    js = nc.jetstream()
    stream = topology.stream(EVENTS.name)
    sub = await js.pull_subscribe(
        topology.subject(contract_subject),
        stream=stream,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
    )
    info = await sub.consumer_info()
    out: list[dict[str, object]] = []
    remaining = info.num_pending or 0
    while remaining > 0:
        msgs = await sub.fetch(min(1000, remaining), timeout=5)
        for msg in msgs:
            out.append(json.loads(msg.data))
            await msg.ack()
        remaining -= len(msgs)
    await sub.unsubscribe()
    await nc.drain()
    return out


def assert_matches_core(stack: LocalStack, catalog: Catalog, facts: Sequence[InboundEvent]) -> None:
    """Certifications (per employee, over HTTP) and progress tables equal the pure core's."""
    expected = expected_states(catalog, facts)
    certification = stack.services["certification"].base_url
    mismatches = []
    for emp, state in sorted(expected.items()):
        status, body = http_json(f"{certification}/v1/employees/{emp}")
        assert status == 200, (emp, status, body)
        got = {lv["level"]: lv["certified_on"] for lv in body["levels"]}
        want = {n: lv.certified_on.isoformat() for n, lv in state.levels.items()}
        if got != want or {s["skill"] for s in body["skills"]} != set(state.skills):
            mismatches.append((emp, want, got))
    assert not mismatches, (
        f"{len(mismatches)} employees differ from the core, e.g. {mismatches[:3]}"
    )
    years = sorted(catalog.fiscal_years)
    oracle = expected_progress(catalog, facts, years)
    reporting = stack.services["reporting"].base_url
    for fy in years:
        # the oracle is at each year's end; the service's default is today while a year runs
        end = fiscal_year_end(fy).isoformat()
        status, body = http_json(f"{reporting}/v1/progress?fiscal_year={fy}&as_of={end}")
        assert status == 200, body
        got_rows = [
            (r["level"], r["target"], r["reached"], r["exactly"], r["percent"])
            for r in body["levels"]
        ]
        want_rows = [
            (
                lv.level,
                lv.target,
                lv.reached,
                lv.exactly,
                None if lv.percent is None else float(lv.percent),
            )
            for lv in oracle[fy].levels
        ]
        assert sorted(got_rows) == sorted(want_rows), (fy, got_rows, want_rows)
        status, body = http_json(
            f"{reporting}/v1/progress/departments?fiscal_year={fy}&as_of={end}"
        )
        assert status == 200, body
        as_of = dt.date.fromisoformat(body["as_of"])
        by_department = department_counts(expected_departments(catalog, facts, fy, as_of))
        assert served_department_counts(body) == by_department, fy


def handled(stack: LocalStack, service: str) -> float:
    """Messages a service's consumer has handled, from its Prometheus /metrics."""
    url = stack.services[service].base_url + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("dxtalent_messages_handled_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def no_duplicate_ids(events: Sequence[Mapping[str, object]]) -> None:
    counts = Counter(str(e["id"]) for e in events)
    dupes = [i for i, n in counts.items() if n > 1]
    assert not dupes, f"{len(dupes)} event ids published more than once, e.g. {dupes[:3]}"
