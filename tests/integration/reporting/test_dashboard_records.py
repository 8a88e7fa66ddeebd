"""The read models behind the 職員, 改善事例 and データ連携 pages, through the pages."""

from __future__ import annotations

import uuid

from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseCompletionRecorded,
    ImprovementCaseRecordedEvent,
    SkillAcquired,
    SkillAcquiredEvent,
    SkillRevoked,
    SkillRevokedEvent,
)
from dxtalent_contracts.inbound import CompletionVoided, ImprovementCaseReported
from tests.integration.reporting.harness import (
    CERTIFICATION,
    ENROLLMENT,
    Reporting,
    _ids,
    day,
    employee,
    left,
)
from tests.integration.reporting.test_dashboard import FY, cells


def completed(employee_id: str, course: str, on: str, fact_id: str) -> CourseCompletedRecordedEvent:
    """A recorded completion of `course` with inbound fact id `fact_id`."""
    return CourseCompletedRecordedEvent(
        **_ids(),
        source=ENROLLMENT,
        type="dxtalent.enrollment.CourseCompleted.v1",
        subject=employee_id,
        data=CourseCompletionRecorded(
            employee_id=employee_id,
            course_id=course,
            completed_on=day(on),
            fiscal_year=2025,
            skills=[],
            fact_id=fact_id,
        ),
    )


def voided(employee_id: str, course: str, fact_id: str) -> CompletionVoidedRecordedEvent:
    """The completion `fact_id` was recorded in error."""
    return CompletionVoidedRecordedEvent(
        **_ids(),
        source=ENROLLMENT,
        type="dxtalent.enrollment.CompletionVoided.v1",
        subject=employee_id,
        data=CompletionVoided(
            employee_id=employee_id, course_id=course, voided_event_id=fact_id, reason="入力誤り"
        ),
    )


def skill(employee_id: str, code: str, on: str) -> SkillAcquiredEvent:
    """`code` held from `on` through DX-101."""
    return SkillAcquiredEvent(
        **_ids(),
        source=CERTIFICATION,
        type="dxtalent.certification.SkillAcquired.v1",
        subject=employee_id,
        data=SkillAcquired(
            employee_id=employee_id,
            skill=code,
            course_id="DX-101",
            acquired_on=day(on),
            evidence_event_id=str(uuid.uuid4()),
        ),
    )


async def test_employee_page_shows_skills_lacks_and_corrections(reporting: Reporting) -> None:
    """Held skills exclude a revoked one; the next level's lacks name courses; a voided
    completion stays in the history marked as voided, with its reason."""
    fact = str(uuid.uuid4())
    revoke = SkillRevokedEvent(
        **_ids(),
        source=CERTIFICATION,
        type="dxtalent.certification.SkillRevoked.v1",
        subject="E1",
        data=SkillRevoked(employee_id="E1", skill="ict-basics", reason="void"),
    )
    await reporting.publish(
        employee("E1", "D-A", name="総務課"),
        completed("E1", "ICT-101", "2025-06-01", fact),
        skill("E1", "dx-basics", "2025-05-01"),
        skill("E1", "ict-basics", "2025-06-01"),
        voided("E1", "ICT-101", fact),
        revoke,
    )
    await reporting.settle()
    html = (
        await reporting.http.get("/dashboard/employee", params={**FY, "employee_id": "E1"})
    ).text
    assert [r[0] for r in cells(html, "skills")] == ["DX基礎"]
    lacking = {r[0]: r[1] for r in cells(html, "next")}
    assert "ICT-101" in lacking["ICT基礎"]
    history = cells(html, "history")
    assert ["2025年6月1日", "修了（取消済）", "ICT-101（取消:入力誤り）"] in history


async def test_cases_and_intake_pages_count_what_was_received(reporting: Reporting) -> None:
    """An improvement case is listed with its hours and totalled per year; every recorded fact
    is counted on its day and type on the data-intake page."""
    case = ImprovementCaseRecordedEvent(
        **_ids(),
        source=ENROLLMENT,
        type="dxtalent.enrollment.ImprovementCaseReported.v1",
        subject="C-1",
        data=ImprovementCaseReported(
            case_id="C-1",
            department_code="D-A",
            fiscal_year=2025,
            title="窓口予約のオンライン化",
            leader_employee_ids=["E1"],
            skills_applied=["dx-basics"],
            hours_saved_per_year=120.5,
        ),
    )
    await reporting.publish(employee("E1", "D-A", name="総務課"), case)
    await reporting.settle()
    html = (await reporting.http.get("/dashboard/cases", params=FY)).text
    assert cells(html, "totals") == [["令和7年度（2025年度）", "1", "120.5"]]
    assert cells(html, "cases")[0][1:] == [
        "総務課",
        "窓口予約のオンライン化",
        "E1",
        "DX基礎",
        "120.5",
    ]
    intake = (await reporting.http.get("/dashboard/intake")).text
    kinds = {r[1]: r[2] for r in cells(intake, "facts")}
    assert kinds == {"職員情報": "1", "改善事例": "1"}


async def test_categories_count_members_compliance_and_what_is_missing(
    reporting: Reporting,
) -> None:
    """全職員 counts every employed person; compliant members hold every required skill by
    as_of; the missing knowledge is counted per skill; a leaver is no member."""
    await reporting.publish(
        employee("E1", "D-A"),
        employee("E2", "D-A"),
        employee("E3", "D-B"),
        skill("E1", "municipal-dx-basics", "2025-05-01"),
        skill("E1", "infosec-measures", "2025-05-01"),
        skill("E2", "infosec-measures", "2026-06-01"),  # after as_of: not yet held
        left("E3", "2025-04-30"),
    )
    await reporting.settle()
    html = (await reporting.http.get("/dashboard/categories", params=FY)).text
    summary = {r[0]: r[1:] for r in cells(html, "summary")}
    assert summary["全職員"] == ["2", "1", "50.0%"]
    missing = {(r[0], r[1]): r[2] for r in cells(html, "missing")}
    assert missing[("全職員", "自治体ＤＸ基礎知識")] == "1"
    assert missing[("全職員", "情報セキュリティ対策知識")] == "1"
