"""`dxtalent status`: how far behind each service is, one line per service.

Reads `GET /v1/status` of every service (the same bearer token as `dxtalent progress`): each
consumer's messages pending and awaiting acknowledgement, and the outbox backlog. A service
that does not answer gets its own line saying so; a refused token is a one-line `UserError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dxtalent.errors import UserError, token_refused
from dxtalent.stack import http_json


def _consumers(body: Mapping[str, Any]) -> str:
    parts = []
    for c in body.get("consumers", []):
        if c.get("pending") is None:
            parts.append(f"consumer {c['durable']}: unknown (NATS did not answer)")
        else:
            counts = f"{c['pending']} pending, {c['ack_pending']} unacked"
            parts.append(f"consumer {c['durable']}: {counts}")
    return "; ".join(parts) or "no consumers"


def status_line(name: str, body: Mapping[str, Any]) -> str:
    """`reporting     caught up  consumer reporting: 0 pending, 0 unacked; outbox -`"""
    state = "caught up" if body.get("caught_up") is True else "behind"
    backlog = body.get("outbox_backlog")
    outbox = "-" if backlog is None else str(backlog)
    return f"{name:<13} {state:<9}  {_consumers(body)}; outbox {outbox}"


def service_status(name: str, base_url: str, token: str | None) -> tuple[str, bool]:
    """One service's line and whether it is caught up (False when it does not answer)."""
    url = f"{base_url}/v1/status"
    try:
        status, body = http_json(url, token=token)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return f"{name:<13} {'down':<9}  no answer at {base_url} ({reason})", False
    if status == 401:
        raise UserError(token_refused(name, url))
    if status != 200 or not isinstance(body, dict):
        shown = " ".join(str(body).split())[:120]
        return f"{name:<13} {'unknown':<9}  GET {url} answered {status} ({shown})", False
    return status_line(name, body), body.get("caught_up") is True


def all_statuses(urls: Mapping[str, str], token: str | None) -> tuple[list[str], bool]:
    """Every service's line, and whether all of them are caught up."""
    results = [service_status(name, url, token) for name, url in urls.items()]
    return [line for line, _ in results], all(ok for _, ok in results)
