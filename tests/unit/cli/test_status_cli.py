"""`dxtalent status` lines: what a person reads about each service's lag."""

from __future__ import annotations

from dxtalent.status_cli import service_status, status_line
from dxtalent_infra.servers import free_port


def test_a_service_behind_shows_its_counts_and_backlog() -> None:
    """A status body with a backlog gives a `behind` line with each consumer's counts."""
    body = {
        "service": "enrollment",
        "caught_up": False,
        "consumers": [{"durable": "enrollment", "pending": 1200, "ack_pending": 500}],
        "outbox_backlog": 493,
    }
    assert status_line("enrollment", body) == (
        "enrollment    behind     consumer enrollment: 1200 pending, 500 unacked; outbox 493"
    )


def test_counts_nats_did_not_give_are_called_unknown() -> None:
    """A consumer whose counts are null (NATS away) is named as unknown, not as zero."""
    body = {
        "caught_up": False,
        "consumers": [{"durable": "reporting", "pending": None, "ack_pending": None}],
        "outbox_backlog": None,
    }
    assert status_line("reporting", body) == (
        "reporting     behind     consumer reporting: unknown (NATS did not answer); outbox -"
    )


def test_a_service_that_does_not_answer_is_down_and_not_caught_up() -> None:
    """Nothing listening at the URL gives a `down` line naming it, and not caught up."""
    url = f"http://127.0.0.1:{free_port()}"
    line, caught_up = service_status("certification", url, None)
    assert caught_up is False
    assert line.startswith(f"certification down       no answer at {url} (")
