"""The embedded nats-server process itself runs with the environment `process_env` gives
(decision 0360)."""

from __future__ import annotations

from pathlib import Path

from dxtalent_infra.servers import EmbeddedNats


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_the_started_server_runs_with_its_process_env(own_nats: EmbeddedNats) -> None:
    assert own_nats.pid is not None
    assert _environ(own_nats.pid)["GOMAXPROCS"] == own_nats.process_env()["GOMAXPROCS"]
