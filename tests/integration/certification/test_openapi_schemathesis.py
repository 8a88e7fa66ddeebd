"""Schemathesis against the running certification service and its own OpenAPI document: no 5xx,
every answer documented and shaped as documented, no request the document allows refused, bad
ones refused; with the bearer token, and without it (then every answer is a documented 401)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis.checks import (
    ignored_auth,
)

from dxtalent_certification.service import SPEC
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from tests.integration.certification.harness import L1_COURSES, Enrollment
from tests.integration.live_api import (  # the fixture is autouse
    CHECKS,
    ThreadedService,
    assert_documented_401,
    schemathesis_node_id,  # noqa: F401
    with_token,
)
from tests.support.servers import ServerUrls, unique_token

TOKEN = "schemathesis-token"


@pytest.fixture(scope="module")
def certification_service(server_urls: ServerUrls) -> Iterator[ThreadedService]:
    """The certification service with DXT_API_TOKEN set; E000123 (the documented example id)
    holds level 1, so the example request is answered 200 with a full body."""
    settings = Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=server_urls.nats_url,
        database_url=server_urls.database_url,
        prefix=unique_token(),
        http_port=free_port(),
        api_token=SecretStr(TOKEN),
        relay_poll_interval_s=0.2,
        catalog=None,
    )
    who = Enrollment(employee_id="E000123")
    with ThreadedService(SPEC, settings) as service:
        service.publish([who.record(), who.nomination(), *(who.completion(c) for c in L1_COURSES)])
        yield service


@pytest.fixture(scope="module")
def certification_api(certification_service: ThreadedService) -> schemathesis.BaseSchema:
    """The service's OpenAPI document as it serves it; requests carry the bearer token."""
    return schemathesis.openapi.from_url(
        f"{certification_service.base_url}/openapi.json", config=with_token(TOKEN)
    )


@pytest.fixture(scope="module")
def certification_api_anonymous(
    certification_service: ThreadedService,
) -> schemathesis.BaseSchema:
    """The same document; requests carry whatever bearer token schemathesis makes up."""
    return schemathesis.openapi.from_url(f"{certification_service.base_url}/openapi.json")


api = schemathesis.pytest.from_fixture("certification_api")
anonymous_api = schemathesis.pytest.from_fixture("certification_api_anonymous")


@api.parametrize()
@hypothesis.settings(max_examples=40, deadline=None)
def test_the_api_keeps_its_openapi_document_with_the_token(case: schemathesis.Case[Any]) -> None:
    """With the bearer token: no 5xx, documented answers, schema-valid requests accepted,
    invalid ones refused, and requests without the token refused."""
    case.call_and_validate(checks=[*CHECKS, ignored_auth])


@anonymous_api.parametrize()
@hypothesis.settings(max_examples=5, deadline=None)
def test_without_the_token_every_query_is_a_documented_401(case: schemathesis.Case[Any]) -> None:
    """Without the bearer token: 401 with a Bearer challenge, as the document says."""
    assert_documented_401(case)
