"""A stack started by this process is stopped when the process gets SIGTERM, as on Ctrl-C:
`running_stack` turns SIGTERM into KeyboardInterrupt for its block, so its `finally` runs
(by default SIGTERM would end the process at once and leave the services and servers up)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxtalent.stack import SERVICES, LocalStack, running_stack, sigterm_interrupts


class _RecordingStack(LocalStack):
    """A LocalStack that starts nothing and records what `running_stack` asks of it."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"), "nats://127.0.0.1:4", "postgresql://p@127.0.0.1:5/d")
        self.calls: list[str] = []

    def start_servers(self) -> None:
        self.calls.append("start_servers")

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        self.calls.append("start_services")

    def stop(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, before)


def _terminated_while_running(stack: LocalStack) -> None:
    with running_stack(stack):
        # checked first: with the default action the signal would end the test process
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted


@pytest.mark.usefixtures("default_sigterm")
def test_sigterm_inside_a_running_stack_stops_it() -> None:
    stack = _RecordingStack()
    with pytest.raises(KeyboardInterrupt):
        _terminated_while_running(stack)
    assert stack.calls == ["start_servers", "start_services", "stop"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_caller_that_handles_sigterm_keeps_its_handler() -> None:
    def handler(signum: int, frame: object) -> None:
        pass

    before = signal.signal(signal.SIGTERM, handler)
    try:
        with sigterm_interrupts():
            assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.usefixtures("default_sigterm")
def test_outside_the_main_thread_nothing_changes() -> None:
    seen: list[object] = []

    def block() -> None:
        with sigterm_interrupts():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=block)
    worker.start()
    worker.join()
    assert seen == [signal.SIG_DFL]
