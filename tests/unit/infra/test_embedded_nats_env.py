"""The embedded nats-server runs Go's scheduler on one thread unless told otherwise
(decision 0360): the environment's `GOMAXPROCS`, or the server's own `env`, wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from dxtalent_infra.servers import EMBEDDED_NATS_GOMAXPROCS, EmbeddedNats


def test_the_embedded_server_gets_one_scheduler_thread_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    monkeypatch.setenv("SOME_OPERATOR_SETTING", "kept")
    env = EmbeddedNats(tmp_path, port=4999).process_env()
    assert EMBEDDED_NATS_GOMAXPROCS == "1"
    assert env["GOMAXPROCS"] == "1"
    assert env["SOME_OPERATOR_SETTING"] == "kept"


def test_the_environment_and_the_server_env_override_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOMAXPROCS", "4")
    assert EmbeddedNats(tmp_path, port=4999).process_env()["GOMAXPROCS"] == "4"
    server = EmbeddedNats(tmp_path, port=4999, env={"GOMAXPROCS": "2", "PASSWORD": "x"})
    assert server.process_env()["GOMAXPROCS"] == "2"
    assert server.process_env()["PASSWORD"] == "x"
