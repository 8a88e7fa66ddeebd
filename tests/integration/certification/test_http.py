"""The certification HTTP API over a running service: an employee's levels, skills with
evidence, the next level's missing skills with courses; 404, 422 and 401 with a message; the
bearer token as clients expect it (RFC 6750) and declared in OpenAPI."""

from __future__ import annotations

from tests.integration.certification.harness import (
    L1_COURSES,
    L1_SKILLS,
    TOKEN,
    Enrollment,
    RunningService,
)


async def test_an_employee_shows_level_skills_and_what_the_next_level_needs(
    service: RunningService,
) -> None:
    """Level 1 with its evidence, every skill with its completion, level 2's missing skills
    with the courses that grant them."""
    who = Enrollment()
    completions = [who.completion(c, "2025-06-02") for c in L1_COURSES]
    for event in [who.record(department="D-KIKAKU"), who.nomination(2025), *completions]:
        await service.publish(event)
    await service.caught_up()

    body = await service.employee(who.employee_id)
    assert body["employee_id"] == who.employee_id
    assert body["department_code"] == "D-KIKAKU"
    assert body["categories"] == ["dx-leader"]
    assert body["current_level"] == 1
    assert body["left_on"] is None
    assert body["policy_version"] == "hirakata-2025.2"
    [level] = body["levels"]
    assert level["level"] == 1
    assert (level["certified_on"], level["fiscal_year"]) == ("2025-06-02", 2025)
    assert level["fiscal_year_label"] == "令和7年度"
    assert (level["department_code"], level["via_equivalence"]) == ("D-KIKAKU", False)
    fact_of_course = {c.data.course_id: c.data.fact_id for c in completions}
    assert {(e["course_id"], e["event_id"]) for e in level["evidence"]} == set(
        fact_of_course.items()
    )
    skills = {s["skill"]: s for s in body["skills"]}
    assert len(skills) == len(L1_SKILLS)
    assert skills["dx-basics"] == {
        "skill": "dx-basics",
        "name": "DX基礎",
        "area": "ICT",
        "course_id": "DX-101",
        "acquired_on": "2025-06-02",
        "evidence_event_id": fact_of_course["DX-101"],
    }
    following = body["next_level"]
    assert (following["level"], following["nomination_missing"]) == (2, False)
    missing = {m["skill"]: m for m in following["missing"]}
    assert set(missing) == {
        "bpr-basic",
        "data-applied",
        "design-applied",
        "nocode-use",
        "rpa-ocr-use",
    }
    assert missing["bpr-basic"]["courses"] == [
        {"course_id": "BPR-201", "name": "BPR（基礎）", "track": "L2"}
    ]


async def test_an_unknown_or_invalid_employee_id_is_a_clear_4xx(service: RunningService) -> None:
    """404 with a detail for an employee no fact names; 422 for an id outside the pattern."""
    unknown = await service.http.get("/v1/employees/E-NOBODY")
    assert unknown.status_code == 404
    assert "E-NOBODY" in unknown.json()["detail"]
    for bad in ("-starts-with-hyphen", "x" * 65, "has.dot"):
        response = await service.http.get(f"/v1/employees/{bad}")
        assert response.status_code == 422, bad
        body = response.json()
        assert body["message"].startswith("path parameter employee_id: String should match")
        assert body["detail"][0]["loc"] == ["path", "employee_id"]


async def test_without_the_bearer_token_queries_get_401_with_a_bearer_challenge(
    service: RunningService,
) -> None:
    """No token, another scheme, or an empty token: 401 with `WWW-Authenticate: Bearer
    realm=...` and a message naming the header; a wrong token adds `error="invalid_token"`
    (RFC 6750); health stays open."""
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer"},
    ):
        response = await service.http.get("/v1/categories", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == 'Bearer realm="dxtalent"'
        assert "Authorization: Bearer <token>" in response.json()["detail"]

    wrong = await service.http.get("/v1/categories", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == (
        'Bearer realm="dxtalent", error="invalid_token", '
        'error_description="the bearer token is not this service\'s DXT_API_TOKEN"'
    )
    assert wrong.json() == {"detail": "the bearer token is not this service's DXT_API_TOKEN"}
    assert (await service.http.get("/healthz", headers={"Authorization": ""})).status_code == 200


async def test_the_bearer_scheme_is_case_insensitive(service: RunningService) -> None:
    """`bearer`, `BEARER` and `Bearer` are the same scheme (RFC 7235); the token is not."""
    for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
        response = await service.http.get(
            "/v1/categories", headers={"Authorization": f"{scheme} {TOKEN}"}
        )
        assert response.status_code == 200, (scheme, response.text)
    upper = await service.http.get(
        "/v1/categories", headers={"Authorization": f"Bearer {TOKEN.upper()}"}
    )
    assert upper.status_code == 401


async def test_openapi_declares_the_bearer_scheme_and_the_error_bodies(
    service: RunningService,
) -> None:
    """The served OpenAPI document declares HTTP bearer security on every /v1 operation, its
    401, the 422 body with a message, and the employee id's pattern."""
    doc = (await service.http.get("/openapi.json", headers={"Authorization": ""})).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["type"] == "http"
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operations = [
        op for path, item in doc["paths"].items() if path.startswith("/v1/") for op in item.values()
    ]
    assert len(operations) == 4  # employee, categories, employee credentials, status
    for operation in operations:
        assert operation["security"] == [{"bearerAuth": []}]
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    employee = doc["paths"]["/v1/employees/{employee_id}"]["get"]
    [employee_id] = employee["parameters"]
    assert employee_id["schema"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    assert employee["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorBody"
    }
    assert doc["components"]["schemas"]["ValidationErrorBody"]["required"] == ["message", "detail"]


async def test_categories_summarise_compliance_and_openapi_documents_the_api(
    service: RunningService,
) -> None:
    """/v1/categories counts members and compliance; /openapi.json documents both queries."""
    who = Enrollment()
    await service.publish(who.record())
    await service.caught_up()

    categories = (await service.http.get("/v1/categories")).json()
    by_code = {c["code"]: c for c in categories["categories"]}
    assert by_code["dx-leader"]["members"] == 1
    assert by_code["dx-leader"]["compliant"] == 0
    assert by_code["dx-leader"]["percent"] == 0.0
    assert by_code["dx-leader"]["missing_by_skill"]["dx-basics"] == 1
    assert by_code["executive"]["percent"] is None

    schema = (await service.http.get("/openapi.json")).json()
    assert "/v1/employees/{employee_id}" in schema["paths"]
    assert "/v1/categories" in schema["paths"]
    fields = schema["components"]["schemas"]["EmployeeView"]["properties"]
    assert {"current_level", "levels", "skills", "next_level", "policy_version"} <= set(fields)
