"""Which inbox prefix a NATS client takes its replies under (decision 0180): the only one its
user may subscribe to in deploy/nats/accounts.conf."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dxtalent_infra.nats import broker_inbox_prefix, broker_options
from dxtalent_infra.runtime import service_broker
from dxtalent_infra.settings import Settings


@pytest.mark.parametrize(
    ("settings", "owner", "prefix"),
    [
        (Settings(nats_user="enrollment"), "enrollment", "_INBOX_enrollment"),
        (Settings(nats_user="ops"), None, "_INBOX_ops"),
        (Settings(), "reporting", "_INBOX_reporting"),  # a service without a user
        (Settings(), None, "_INBOX"),  # the CLI on an open server: nats-py's own
        (Settings(nats_user="hr", nats_inbox_prefix="_INBOX_lms"), None, "_INBOX_lms"),
    ],
)
def test_the_prefix_follows_the_user(settings: Settings, owner: str | None, prefix: str) -> None:
    assert settings.inbox_prefix(owner) == prefix


def test_a_prefix_must_be_one_subject_token() -> None:
    with pytest.raises(ValidationError):
        Settings(nats_inbox_prefix="_INBOX.x")


def test_the_service_broker_and_its_pull_subscribers_use_it() -> None:
    broker = service_broker("certification", Settings(nats_user="certification"))
    assert broker_inbox_prefix(broker) == b"_INBOX_certification."
    assert broker_options(name="x")["inbox_prefix"] == "_INBOX"
