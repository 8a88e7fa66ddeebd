"""The reporting API's parameters as clients expect them: `as_of` is a calendar date inside the
fiscal year, else 422 saying the year's first and last day; the OpenAPI document says what each
parameter accepts and how a refusal looks."""

from __future__ import annotations

from typing import Any

from tests.integration.reporting.harness import Reporting

REPORTS = ("/v1/progress", "/v1/progress.csv", "/v1/progress/departments")


async def test_as_of_outside_the_fiscal_year_is_a_422_naming_its_first_and_last_day(
    reporting: Reporting,
) -> None:
    """FY2026 runs 2026-04-01 … 2027-03-31: both ends are answered, the days around them get a
    422 whose message names the year and its first and last day, on every report."""
    for path in REPORTS:
        for inside in ("2026-04-01", "2027-03-31"):
            response = await reporting.http.get(path, params={"fiscal_year": 2026, "as_of": inside})
            assert response.status_code == 200, (path, inside, response.text)
        for outside in ("2026-03-31", "2027-04-01"):
            response = await reporting.http.get(
                path, params={"fiscal_year": 2026, "as_of": outside}
            )
            assert response.status_code == 422, (path, outside)
            body = response.json()
            assert body["message"] == (
                f"as_of {outside} is outside 令和8年度 (FY2026): 2026-04-01 … 2027-03-31"
            )
            assert body["detail"] == [
                {
                    "loc": ["query", "as_of"],
                    "msg": body["message"],
                    "type": "value_error",
                    "input": outside,
                }
            ]


async def test_as_of_must_be_written_as_a_calendar_date(reporting: Reporting) -> None:
    """Only YYYY-MM-DD: a datetime, a number or a day that does not exist is a 422 saying so."""
    for text in ("2025-06-01T00:00:00", "0", "20250601", "2025-02-29"):
        response = await reporting.http.get(
            "/v1/progress", params={"fiscal_year": 2025, "as_of": text}
        )
        assert response.status_code == 422, text
        [problem] = response.json()["detail"]
        assert problem["loc"] == ["query", "as_of"], text
        assert "as_of must be a calendar date YYYY-MM-DD" in response.json()["message"], text


async def test_the_openapi_document_says_what_each_parameter_accepts(
    reporting: Reporting,
) -> None:
    """as_of is `format: date`, fiscal_year 2019–2100, department the contract's id pattern;
    every report documents its 422 body (with `message`) and 503."""
    doc = (await reporting.http.get("/openapi.json")).json()
    for path in REPORTS:
        operation = doc["paths"][path]["get"]
        params = {p["name"]: p for p in operation["parameters"]}
        assert _schema(params["as_of"])["format"] == "date", path
        assert params["fiscal_year"]["required"] is True
        year = params["fiscal_year"]["schema"]
        assert (year["type"], year["minimum"], year["maximum"]) == ("integer", 2019, 2100)
        if path != "/v1/progress/departments":
            pattern = _schema(params["department"])["pattern"]
            assert pattern == "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
        refs = {
            code: response["content"]["application/json"]["schema"]["$ref"]
            for code, response in operation["responses"].items()
            if code != "200"
        }
        assert refs == {
            "422": "#/components/schemas/ValidationErrorBody",
            "503": "#/components/schemas/ErrorBody",
        }
    assert "securitySchemes" not in doc.get("components", {})  # no token set, none required


def _schema(parameter: dict[str, Any]) -> dict[str, Any]:
    """The non-null schema of an optional parameter."""
    schema: dict[str, Any] = parameter["schema"]
    [present] = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    return dict(present)
