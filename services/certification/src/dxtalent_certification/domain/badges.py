"""Open Badges 3.0 credentials for certified levels, built from facts alone (no clock, no ids).

`achievement(catalog, issuer, level)` is the level's `Achievement` as the catalog defines it
(Japanese names and descriptions, English where the catalog gives them, each required skill as
an `Alignment`). `level_credential` is the `OpenBadgeCredential` (OB 3.0 names it
`AchievementCredential` too) awarding it to one employee, with a `credentialStatus` entry at
its index of the issuer's revocation status list. Everything in it comes from the
`LevelCertified` event and the catalog: replaying the same event gives the same credential.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from dxtalent_certification.domain.issuer import OB_CONTEXT, VC_CONTEXT, Issuer
from dxtalent_certification.domain.status_list import status_entry
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.events import LevelCertified
from dxtalent_contracts.fiscal import JST

CREDENTIAL_TYPE = ["VerifiableCredential", "OpenBadgeCredential"]

#: Namespace of credential ids: uuid5(namespace, id of the LevelCertified event).
CREDENTIAL_NAMESPACE = uuid.UUID("9b1f7c52-3e0a-4d6b-8f21-6a7d0c5e4b13")


def credential_id(level_certified_event_id: str) -> str:
    """The id of the credential a `LevelCertified` event (a new certification) issues."""
    return f"urn:uuid:{uuid.uuid5(CREDENTIAL_NAMESPACE, level_certified_event_id)}"


def subject_id(catalog: Catalog, employee_id: str) -> str:
    """The employee as a URN of the city: an id, never a name (see docs/privacy.md)."""
    return f"urn:{catalog.municipality.code}:employee:{employee_id}"


def valid_from(certified_on: dt.date) -> dt.datetime:
    """The start of the certification day in Japan: when the credential takes effect."""
    return dt.datetime.combine(certified_on, dt.time(0, 0), tzinfo=JST)


def _bilingual(ja: str, en: str | None) -> str:
    return ja if en is None else f"{ja} / {en}"


def achievement(catalog: Catalog, issuer: Issuer, level: int) -> dict[str, Any]:
    """The catalog's level `level` as an OB 3.0 `Achievement`."""
    rule = catalog.level_rule(level)
    skills = [catalog.skill_by_code[code] for code in rule.required]
    listed = "\n".join(f"- {_bilingual(s.name, s.name_en)}" for s in skills)
    duty = "".join(
        f"\n- ★ {_bilingual(catalog.skill_by_code[c].name, catalog.skill_by_code[c].name_en)}"
        for c in rule.duty
    )
    return {
        "id": f"{issuer.id}/achievements/{catalog.policy_version}/level-{level}",
        "type": ["Achievement"],
        "achievementType": "Certificate",
        "name": _bilingual(rule.name, rule.name_en),
        "description": _bilingual(rule.description or rule.name, rule.description_en),
        "criteria": {
            "narrative": "必要なスキル / Required skills "
            "(★: 職務に応じて / when the duties call for it):\n" + listed + duty
        },
        "alignment": [
            {
                "type": ["Alignment"],
                "targetName": _bilingual(s.name, s.name_en),
                "targetUrl": f"{issuer.id}/skills/{s.code}",
                "targetCode": s.code,
                "targetType": "ceterms:Skill",
            }
            for s in skills
        ],
        "inLanguage": "ja",
        "creator": issuer.profile(),
        "humanCode": f"{catalog.municipality.code}-dx-leader-{level}",
    }


def level_credential(
    catalog: Catalog, issuer: Issuer, event_id: str, certified: LevelCertified, status_index: int
) -> dict[str, Any]:
    """The credential awarding `certified.level` to `certified.employee_id` (event `event_id`)."""
    start = valid_from(certified.certified_on).isoformat()
    rule = catalog.level_rule(certified.level)
    return {
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": credential_id(event_id),
        "type": CREDENTIAL_TYPE,
        "issuer": issuer.profile(),
        "validFrom": start,
        "awardedDate": start,
        "name": _bilingual(rule.name, rule.name_en),
        "credentialSubject": {
            "id": subject_id(catalog, certified.employee_id),
            "type": ["AchievementSubject"],
            "identifier": [
                {
                    "type": "IdentityObject",
                    "identityHash": certified.employee_id,
                    "identityType": "identifier",
                    "hashed": False,
                }
            ],
            "achievement": achievement(catalog, issuer, certified.level),
        },
        "credentialStatus": status_entry(issuer.id, status_index),
    }
