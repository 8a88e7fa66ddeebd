"""Shutdown steps share one grace period (`DXT_SHUTDOWN_GRACE_S`): a step that hangs is cut
off at the deadline, so the process closes before the orchestrator's SIGKILL."""

from __future__ import annotations

import asyncio
import time

from dxtalent_infra.runtime import bounded_step


async def test_a_hanging_step_is_cut_off_at_the_deadline() -> None:
    """Given a deadline 0.2 s away, a step that would take 10 s ends after about 0.2 s."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    await bounded_step(loop.time() + 0.2, "outbox relay", asyncio.sleep(10))
    assert 0.15 < time.monotonic() - started < 1.0


async def test_a_failing_step_does_not_stop_the_next_one() -> None:
    """A step that raises is logged and the shutdown goes on to the next step."""
    loop = asyncio.get_running_loop()
    done: list[str] = []

    async def fails() -> None:
        raise ConnectionError("NATS away")

    async def next_step() -> None:
        done.append("next")

    await bounded_step(loop.time() + 1, "consumer", fails())
    await bounded_step(loop.time() + 1, "outbox relay", next_step())
    assert done == ["next"]
