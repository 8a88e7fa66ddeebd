"""Where the test servers come from: the engine check, images and commands, the fallback."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from tests.support import containers, servers


def test_engine_check_names_a_missing_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DOCKER_HOST socket that does not exist means no containers, and the reason names it."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")

    reason = containers.engine_unavailable()

    assert reason is not None
    assert "unix:///nonexistent/docker.sock" in reason


def test_engine_check_gives_up_quickly_on_a_silent_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine address that accepts but never answers costs seconds, not a long timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        began = time.monotonic()

        reason = containers.engine_unavailable()

        assert reason is not None
        assert time.monotonic() - began < 3 * containers.ENGINE_TIMEOUT_S


def test_images_default_to_the_official_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without DXT_TEST_*_IMAGE the official NATS and PostgreSQL images are used."""
    monkeypatch.delenv("DXT_TEST_NATS_IMAGE", raising=False)
    monkeypatch.delenv("DXT_TEST_POSTGRES_IMAGE", raising=False)

    assert containers.nats_spec().image == "nats:2.12-alpine"
    assert containers.postgres_spec().image == "postgres:17"


def test_images_come_from_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """DXT_TEST_NATS_IMAGE / DXT_TEST_POSTGRES_IMAGE name the images (e.g. local stand-ins)."""
    monkeypatch.setenv("DXT_TEST_NATS_IMAGE", "localhost/dxtalent-test-nats:latest")
    monkeypatch.setenv("DXT_TEST_POSTGRES_IMAGE", "localhost/dxtalent-test-postgres:latest")

    assert containers.nats_spec().image == "localhost/dxtalent-test-nats:latest"
    assert containers.postgres_spec().image == "localhost/dxtalent-test-postgres:latest"


def test_servers_in_containers_listen_on_loopback_at_their_own_port() -> None:
    """Both containers are told to listen on 127.0.0.1 at the free port their URL names."""
    nats, pg = containers.nats_spec(), containers.postgres_spec()

    assert nats.command[:4] == ["-a", "127.0.0.1", "-p", str(nats.port)]
    assert "-js" in nats.command
    assert nats.url == f"nats://127.0.0.1:{nats.port}"
    assert "listen_addresses=127.0.0.1" in pg.command
    assert pg.env["PGPORT"] == str(pg.port)
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/test"


def test_a_container_that_cannot_start_means_embedded_servers_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the engine goes away before the start, a warning names the image and why."""
    monkeypatch.setattr(containers, "engine_unavailable", lambda: None)
    monkeypatch.setattr(servers, "SOURCES", [])
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("DXT_TEST_NATS_IMAGE", "localhost/dxtalent-test-nats:absent")

    with (
        contextlib.ExitStack() as stack,
        pytest.warns(servers.ContainerFallbackWarning, match="dxtalent-test-nats:absent"),
    ):
        urls = servers._from_containers(stack, want_nats=True, want_pg=True)

    assert urls is None
    assert servers.SOURCES[0].startswith("containers did not start, using embedded servers")
