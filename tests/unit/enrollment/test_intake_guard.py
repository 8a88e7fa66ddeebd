"""The HTTP intake's token: closed without DXT_INGEST_TOKEN, its own bearer token with it."""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from dxtalent_enrollment.intake import ingest_bearer_guard


def _client(token: SecretStr | None) -> httpx.AsyncClient:
    app = FastAPI()

    @app.post("/door", dependencies=[Depends(ingest_bearer_guard(token))])
    async def door() -> dict[str, bool]:
        return {"open": True}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


async def test_without_an_ingest_token_the_door_is_closed() -> None:
    """Unset DXT_INGEST_TOKEN: 503 naming the setting, whatever token is sent."""
    response = await _client(None).post("/door", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 503
    assert "set DXT_INGEST_TOKEN" in response.json()["detail"]


async def test_with_an_ingest_token_only_that_bearer_token_opens_it() -> None:
    """The right token passes; another is 401 with an RFC 6750 challenge naming the setting."""
    client = _client(SecretStr("in"))
    opened = await client.post("/door", headers={"Authorization": "bearer in"})
    assert opened.json() == {"open": True}
    refused = await client.post("/door", headers={"Authorization": "Bearer query-token"})
    assert refused.status_code == 401
    assert "DXT_INGEST_TOKEN" in refused.json()["detail"]
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
