"""DXT_NATS_URL: one server, or a cluster's servers separated by commas."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dxtalent_infra.settings import Settings, nats_servers


def test_one_server_is_a_list_of_one() -> None:
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_a_cluster_is_its_servers_in_order_without_blanks() -> None:
    """Spaces around the commas and a trailing comma do not matter; `HOST:PORT` is nats://."""
    assert nats_servers(" nats://n1:4222, tls://n2:4222,n3:4222, ") == [
        "nats://n1:4222",
        "tls://n2:4222",
        "nats://n3:4222",
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "no server in it"),
        (" , ", "no server in it"),
        ("nats://n1:4222,http://n2:80", "'http://n2:80' is not a NATS URL"),
        ("nats://n1:99999", "'nats://n1:99999' is not a URL"),
        ("nats://:4222", "'nats://:4222' is not a NATS URL"),
    ],
)
def test_what_is_not_a_list_of_nats_urls_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        nats_servers(url)


def test_the_setting_keeps_the_clean_list_and_gives_it_as_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DXT_NATS_URL", "nats://n1:4222 , nats://n2:4222")
    settings = Settings()
    assert settings.nats_url == "nats://n1:4222,nats://n2:4222"
    assert settings.nats_server_list == ["nats://n1:4222", "nats://n2:4222"]


def test_the_setting_names_a_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DXT_NATS_URL", "nats://n1:4222,ws://n2:80")
    with pytest.raises(ValidationError, match="'ws://n2:80' is not a NATS URL"):
        Settings()
