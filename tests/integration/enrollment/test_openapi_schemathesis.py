"""Schemathesis against the running enrollment service and its own OpenAPI document.

`POST /v1/facts` is held to every check the other APIs are (no 5xx, documented answers, requests
the document allows accepted, others refused). The xAPI resource is held to no 5xx and
documented, well-shaped answers: its documented schema cannot say everything xAPI requires (a
PUT body's id must equal `statementId`), so it is not held to accepting every schema-valid body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from dxtalent_enrollment.intake import BEARER_SCHEME
from dxtalent_enrollment.service import SPEC
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from tests.integration.live_api import (  # the fixture is autouse
    CHECKS,
    ThreadedService,
    schemathesis_node_id,  # noqa: F401
)
from tests.support.servers import ServerUrls, unique_token

TOKEN = "schemathesis-ingest-token"


@pytest.fixture(scope="module")
def enrollment_service(server_urls: ServerUrls) -> Iterator[ThreadedService]:
    """The enrollment service with DXT_INGEST_TOKEN set."""
    settings = Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=server_urls.nats_url,
        database_url=server_urls.database_url,
        prefix=unique_token(),
        http_port=free_port(),
        ingest_token=SecretStr(TOKEN),
        api_token=SecretStr("another-token"),
        relay_poll_interval_s=0.2,
        catalog=None,
    )
    with ThreadedService(SPEC, settings) as service:
        yield service


@pytest.fixture(scope="module")
def enrollment_api(enrollment_service: ThreadedService) -> schemathesis.BaseSchema:
    """The document as served; requests carry the ingest token (Bearer, or Basic password)."""
    config = schemathesis.Config.from_dict(
        {
            "auth": {
                "openapi": {
                    BEARER_SCHEME: {"bearer": TOKEN},
                    "ingestBasic": {"username": "lms", "password": TOKEN},
                }
            }
        }
    )
    return schemathesis.openapi.from_url(
        f"{enrollment_service.base_url}/openapi.json", config=config
    )


facts_api = schemathesis.pytest.from_fixture("enrollment_api").include(path="/v1/facts")
xapi_api = schemathesis.pytest.from_fixture("enrollment_api").include(path_regex="^/xapi/")


@facts_api.parametrize()
@hypothesis.settings(max_examples=60, deadline=None)
def test_post_facts_keeps_its_openapi_document(case: schemathesis.Case[Any]) -> None:
    """POST /v1/facts: no 5xx, documented answers, allowed bodies answered 2xx (each event
    judged on its own), bodies the document refuses answered 4xx, no entry without the token."""
    case.call_and_validate(checks=[*CHECKS, ignored_auth])


@xapi_api.parametrize()
@hypothesis.settings(max_examples=40, deadline=None)
def test_the_xapi_resource_answers_as_documented(case: schemathesis.Case[Any]) -> None:
    """/xapi: no 5xx, and every answer one the document lists, in the documented shape."""
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
