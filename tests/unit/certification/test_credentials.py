"""Open Badges credentials: built from facts alone, signed as VC-JWT, verified, status lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from dxtalent_certification.credentials import CredentialSettingsError, credential_issuer
from dxtalent_certification.domain.badges import achievement, credential_id, level_credential
from dxtalent_certification.domain.issuer import Issuer
from dxtalent_certification.domain.status_list import (
    LIST_SIZE,
    StatusListError,
    bit_is_set,
    encode,
    status_list_credential,
)
from dxtalent_certification.vcjwt import CredentialKeyError, Signer
from dxtalent_certification.verification import check_issuer, check_signature, check_status
from dxtalent_contracts.catalog import Catalog, load_catalog
from dxtalent_contracts.events import Evidence, LevelCertified
from dxtalent_infra.settings import Settings

pytestmark = pytest.mark.unit

ISSUER = Issuer("https://dx.example.jp", "枚方市")
EVENT_ID = "0b0e7c1a-7a53-5d0e-9a61-3c1f4b2a9e10"


def _pem(key: Ed25519PrivateKey | Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_pem(_pem(Ed25519PrivateKey.generate()), "test key")


def _certified(level: int = 1, on: str = "2025-06-01") -> LevelCertified:
    return LevelCertified(
        employee_id="E000123",
        level=level,
        fiscal_year=2025,
        certified_on=dt.date.fromisoformat(on),
        department_code="D-SOUMU",
        evidence=[
            Evidence(
                skill="dx-basics",
                course_id="DX-101",
                completed_on=dt.date(2025, 5, 1),
                event_id="ev-1",
            )
        ],
        policy_version="hirakata-2025.2",
    )


def _credential(catalog: Catalog, index: int = 7, on: str = "2025-06-01") -> dict[str, Any]:
    return level_credential(catalog, ISSUER, EVENT_ID, _certified(on=on), index)


def _status_token(signer: Signer, revoked: list[int]) -> str:
    as_of = dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
    return signer.sign(status_list_credential(ISSUER, 1, revoked, as_of))


def test_the_achievement_lists_the_catalogs_skills_in_japanese_and_english(
    catalog: Catalog,
) -> None:
    """Level 3's achievement aligns every required skill, named in both languages, and its
    criteria name the duty skills."""
    got = achievement(catalog, ISSUER, 3)
    rule = catalog.level_rule(3)
    assert [a["targetCode"] for a in got["alignment"]] == rule.required
    assert got["alignment"][0]["targetName"] == "リーダーシップ / Leadership"
    assert got["name"] == "ＤＸ推進リーダー レベル３ / DX Promotion Leader Level 3"
    assert (
        "★ ノーコード・ローコードツール構築 / Building with no-code" in got["criteria"]["narrative"]
    )


def test_the_credential_is_an_open_badge_dated_from_the_certification(catalog: Catalog) -> None:
    """Given a LevelCertified, the credential names the employee by id, takes effect on the
    certification day in Japan, and points at its bit of the revocation list."""
    vc = _credential(catalog, index=LIST_SIZE + 5)
    assert vc["@context"][1] == "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
    assert vc["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert vc["id"] == credential_id(EVENT_ID)
    assert vc["validFrom"] == "2025-06-01T00:00:00+09:00"
    assert vc["credentialSubject"]["id"] == "urn:hirakata:employee:E000123"
    assert vc["credentialStatus"] == {
        "id": "https://dx.example.jp/credentials/status/2#5",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "5",
        "statusListCredential": "https://dx.example.jp/credentials/status/2",
    }


def test_signing_the_same_facts_twice_gives_the_same_token(
    catalog: Catalog, signer: Signer
) -> None:
    """Replays issue identical credentials: no clock, no random id, Ed25519 is deterministic."""
    assert signer.sign(_credential(catalog)) == signer.sign(_credential(catalog))


def test_the_token_carries_the_vc_jwt_claims_and_header(catalog: Catalog, signer: Signer) -> None:
    """Header alg EdDSA with the key's thumbprint as kid; iss, jti, sub, nbf and vc claims."""
    token = signer.sign(_credential(catalog))
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header == {"alg": "EdDSA", "kid": signer.kid, "typ": "JWT"}
    assert claims["iss"] == ISSUER.id
    assert claims["jti"] == credential_id(EVENT_ID)
    assert claims["sub"] == "urn:hirakata:employee:E000123"
    assert claims["nbf"] == int(dt.datetime(2025, 5, 31, 15, tzinfo=dt.UTC).timestamp())
    assert claims["vc"] == _credential(catalog)


def test_an_rsa_key_signs_rs256_and_verifies(catalog: Catalog) -> None:
    """An RSA PEM key signs RS256, and its JWK Set verifies the token."""
    rsa = Signer.from_pem(_pem(generate_private_key(65537, 2048)), "rsa key")
    check, claims = check_signature(rsa.sign(_credential(catalog)), rsa.jwks())
    assert (rsa.alg, check.ok, claims is not None) == ("RS256", True, True)


def test_a_key_file_that_is_not_a_private_key_is_named(signer: Signer) -> None:
    """A PEM that is not a private key is refused with the file's name."""
    with pytest.raises(CredentialKeyError, match=r"^/etc/key\.pem: not an unencrypted PEM"):
        Signer.from_pem(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "/etc/key.pem"
        )


def test_a_good_credential_passes_every_check(catalog: Catalog, signer: Signer) -> None:
    """Signature, pinned issuer and an unset status bit: three checks pass."""
    token = signer.sign(_credential(catalog, index=7))
    sig, claims = check_signature(token, signer.jwks())
    assert claims is not None
    status = check_status(claims, _status_token(signer, [3, 8]), signer.jwks())
    assert [sig.ok, check_issuer(claims, ISSUER.id).ok, status.ok] == [True, True, True]
    assert status.line().startswith("status: ok (not revoked: index 7 of ")


def test_a_tampered_credential_fails_the_signature(catalog: Catalog, signer: Signer) -> None:
    """Changing one character of the payload breaks the signature."""
    header, payload, sig = signer.sign(_credential(catalog)).split(".")
    tampered = f"{header}.{payload[:-3]}{'A' if payload[-3] != 'A' else 'B'}{payload[-2:]}.{sig}"
    check, claims = check_signature(tampered, signer.jwks())
    assert (check.ok, claims) == (False, None)
    assert check.line().startswith("signature: FAILED (")


def test_another_issuers_key_fails_the_signature(catalog: Catalog, signer: Signer) -> None:
    """A token signed by another key is refused: its kid is not among the issuer's keys."""
    other = Signer.from_pem(_pem(Ed25519PrivateKey.generate()), "other")
    check, _ = check_signature(other.sign(_credential(catalog)), signer.jwks())
    assert not check.ok
    assert "no key with kid" in check.detail


def test_a_revoked_credential_fails_the_status(catalog: Catalog, signer: Signer) -> None:
    """With its bit set in the signed list, the status check says revoked."""
    _, claims = check_signature(signer.sign(_credential(catalog, index=7)), signer.jwks())
    assert claims is not None
    status = check_status(claims, _status_token(signer, [7]), signer.jwks())
    assert not status.ok
    assert status.detail.startswith(
        "revoked: index 7 of https://dx.example.jp/credentials/status/1"
    )


def test_an_unexpected_issuer_fails(catalog: Catalog, signer: Signer) -> None:
    """A credential from another issuer than the one pinned fails the issuer check."""
    _, claims = check_signature(signer.sign(_credential(catalog)), signer.jwks())
    assert claims is not None
    assert not check_issuer(claims, "https://other.example.jp").ok


def test_a_status_list_signed_by_another_key_fails(catalog: Catalog, signer: Signer) -> None:
    """A forged status list (another key) cannot clear a revocation."""
    other = Signer.from_pem(_pem(Ed25519PrivateKey.generate()), "other")
    _, claims = check_signature(signer.sign(_credential(catalog)), signer.jwks())
    assert claims is not None
    assert not check_status(claims, _status_token(other, []), signer.jwks()).ok


def test_the_bitstring_counts_from_the_first_bytes_high_bit() -> None:
    """Bit 0 is the high bit of byte 0; set bits read back, others do not; 'u' multibase."""
    encoded = encode([0, 9, LIST_SIZE - 1])
    assert encoded.startswith("u")
    assert [bit_is_set(encoded, i) for i in (0, 1, 8, 9, LIST_SIZE - 1)] == [
        True,
        False,
        False,
        True,
        True,
    ]


def test_encoding_is_deterministic_and_compact() -> None:
    """The same bits always encode the same text (no gzip timestamp); an empty list is small."""
    assert encode([5]) == encode([5])
    assert len(encode([])) < 200


def test_an_index_outside_the_list_is_refused() -> None:
    """Encoding or reading past the list's size raises, naming the index."""
    with pytest.raises(StatusListError, match="status index 131072 is outside"):
        encode([LIST_SIZE])
    with pytest.raises(StatusListError, match="status index 131072 is outside"):
        bit_is_set(encode([]), LIST_SIZE)


def test_a_list_that_is_not_gzip_is_refused() -> None:
    """Garbage in encodedList is a StatusListError, not a crash."""
    with pytest.raises(StatusListError, match="not gzip"):
        bit_is_set("uAAAA", 0)


def test_the_default_catalog_names_every_skill_and_level_in_english(catalog: Catalog) -> None:
    """Credentials are bilingual: every skill and level of the shipped catalog has an English
    name, and every level a description in both languages."""
    assert [s.code for s in catalog.skills if s.name_en is None] == []
    assert [
        r.level for r in catalog.levels if None in (r.name_en, r.description, r.description_en)
    ] == []


def test_credentials_are_off_without_settings_and_refused_half_configured(
    catalog: Catalog, tmp_path: Path
) -> None:
    """No DXT_CREDENTIAL_*: no issuer. One of the two, or a key file that is not there: an
    error naming the setting or the file."""
    key = tmp_path / "key.pem"
    key.write_bytes(_pem(Ed25519PrivateKey.generate()))
    assert credential_issuer(Settings(), catalog, "s") is None
    with pytest.raises(CredentialSettingsError, match=r"^DXT_CREDENTIAL_ISSUER is unset"):
        credential_issuer(Settings(credential_key_file=key), catalog, "s")
    with pytest.raises(CredentialSettingsError, match=r"^DXT_CREDENTIAL_KEY_FILE is unset"):
        credential_issuer(Settings(credential_issuer="https://x.jp"), catalog, "s")
    missing = Settings(credential_key_file=tmp_path / "none.pem", credential_issuer="https://x.jp")
    with pytest.raises(CredentialSettingsError, match=r"none\.pem: cannot read the key"):
        credential_issuer(missing, catalog, "s")
    issuer = credential_issuer(
        Settings(credential_key_file=key, credential_issuer="https://x.jp/"), catalog, "s"
    )
    assert issuer is not None
    assert (issuer.issuer.id, issuer.signer.alg) == ("https://x.jp", "EdDSA")
