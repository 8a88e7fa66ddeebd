"""Schemathesis against the running reporting service and its own OpenAPI document: no 5xx,
every answer documented and shaped as documented, no request the document allows refused, bad
ones refused; with the bearer token, and without it (then every answer is a documented 401)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis.checks import (
    ignored_auth,
)

from dxtalent_contracts.fiscal import fiscal_year_start
from dxtalent_infra.servers import free_port
from dxtalent_infra.settings import Settings
from dxtalent_reporting.service import SPEC
from tests.integration.live_api import (  # the fixture is autouse
    CHECKS,
    ThreadedService,
    assert_documented_401,
    schemathesis_node_id,  # noqa: F401
    with_token,
)
from tests.integration.reporting.harness import employee, levels_up_to, nominated
from tests.support.servers import ServerUrls, unique_token

TOKEN = "schemathesis-token"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@pytest.fixture(scope="module")
def reporting_service(server_urls: ServerUrls) -> Iterator[ThreadedService]:
    """The reporting service with DXT_API_TOKEN set, fed a few employees, for this module."""
    settings = Settings(
        provision_streams=True,  # no permissions on this server: it makes its streams
        nats_url=server_urls.nats_url,
        database_url=server_urls.database_url,
        prefix=unique_token(),
        http_port=free_port(),
        api_token=SecretStr(TOKEN),
        catalog=None,
        batch_size=100,
    )
    with ThreadedService(SPEC, settings) as service:
        service.publish(
            [
                employee("E000123", "D-A", name="総務課"),
                *levels_up_to("E000123", 2, "2025-06-01"),
                nominated("E000123", 2025, "D-A"),
                employee("E000124", "D-B"),
                *levels_up_to("E000124", 3, "2025-09-01", department="D-B"),
            ]
        )
        yield service


def as_of_inside_the_year(query: dict[str, Any] | None) -> None:
    """The one rule OpenAPI cannot state (as_of lies inside fiscal_year): a well-formed as_of
    is moved into a well-formed year, keeping its day of the year. Tests pin the 422 for a
    date outside the year (test_http_api.py)."""
    if not query or not isinstance(query.get("as_of"), str):
        return
    with contextlib.suppress(KeyError, TypeError, ValueError):
        year = int(query["fiscal_year"])
        day = dt.date.fromisoformat(query["as_of"])
        if 2019 <= year <= 2100 and _ISO_DATE.fullmatch(query["as_of"]):
            offset = (day - dt.date(day.year, 1, 1)).days % 365
            query["as_of"] = (fiscal_year_start(year) + dt.timedelta(days=offset)).isoformat()


@pytest.fixture(scope="module")
def reporting_api(reporting_service: ThreadedService) -> schemathesis.BaseSchema:
    """The service's OpenAPI document as it serves it; requests carry the bearer token."""
    return schemathesis.openapi.from_url(
        f"{reporting_service.base_url}/openapi.json", config=with_token(TOKEN)
    )


@pytest.fixture(scope="module")
def reporting_api_anonymous(reporting_service: ThreadedService) -> schemathesis.BaseSchema:
    """The same document; requests carry whatever bearer token schemathesis makes up."""
    return schemathesis.openapi.from_url(f"{reporting_service.base_url}/openapi.json")


api = schemathesis.pytest.from_fixture("reporting_api")
anonymous_api = schemathesis.pytest.from_fixture("reporting_api_anonymous")


@api.parametrize()
@hypothesis.settings(max_examples=40, deadline=None)
def test_the_api_keeps_its_openapi_document_with_the_token(case: schemathesis.Case[Any]) -> None:
    """With the bearer token: no 5xx, documented answers, schema-valid requests accepted,
    invalid ones refused, and requests without the token refused."""
    as_of_inside_the_year(case.query)
    case.call_and_validate(checks=[*CHECKS, ignored_auth])


@anonymous_api.parametrize()
@hypothesis.settings(max_examples=5, deadline=None)
def test_without_the_token_every_query_is_a_documented_401(case: schemathesis.Case[Any]) -> None:
    """Without the bearer token: 401 with a Bearer challenge, as the document says."""
    assert_documented_401(case)
