"""What a verifier checks of a credential: signature, issuer, status. Pure: documents passed in.

Each check gives a `Check` (its name, passed or not, and a detail a person reads). The status
check verifies the status list credential's own signature with the issuer's keys, that it is
the list the credential names and comes from the same issuer, then reads the credential's bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dxtalent_certification.domain.status_list import StatusListError, bit_is_set
from dxtalent_certification.vcjwt import CredentialInvalidError, header_of, verify


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step's outcome."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """`signature: ok (...)` / `status: FAILED (...)`."""
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} ({self.detail})"


def check_signature(token: str, jwks: dict[str, Any]) -> tuple[Check, dict[str, Any] | None]:
    """The signature check, and the verified claims when it passes."""
    try:
        claims = verify(token, jwks)
    except CredentialInvalidError as exc:
        return Check("signature", False, str(exc)), None
    header = header_of(token)
    return Check("signature", True, f"{header['alg']}, kid {header['kid']}"), claims


def check_issuer(claims: dict[str, Any], expected: str | None) -> Check:
    """`iss` is the expected issuer (when one is given; `verify` already tied it to the vc)."""
    issuer = claims["iss"]
    name = claims["vc"]["issuer"].get("name") if isinstance(claims["vc"]["issuer"], dict) else None
    if expected is not None and issuer.rstrip("/") != expected.rstrip("/"):
        return Check("issuer", False, f"{issuer} is not the expected {expected}")
    pinned = "" if expected is not None else "; pass --issuer to require it"
    return Check("issuer", True, f"{issuer}{f' {name}' if name else ''}{pinned}")


def status_of(claims: dict[str, Any]) -> dict[str, Any] | None:
    """The credential's `credentialStatus` entry, if it has one."""
    status = claims["vc"].get("credentialStatus")
    return status if isinstance(status, dict) else None


def check_status(claims: dict[str, Any], list_token: str, jwks: dict[str, Any]) -> Check:
    """The credential's revocation bit, read from the signed status list `list_token`."""
    entry = status_of(claims)
    if entry is None:
        return Check("status", False, "the credential has no credentialStatus")
    try:
        listed = verify(list_token, jwks)
    except CredentialInvalidError as exc:
        return Check("status", False, f"the status list does not verify: {exc}")
    if listed["iss"] != claims["iss"] or listed["vc"]["id"] != entry["statusListCredential"]:
        return Check(
            "status",
            False,
            f"the status list {listed['vc']['id']} of {listed['iss']} is not "
            f"{entry['statusListCredential']} of {claims['iss']}",
        )
    subject = listed["vc"]["credentialSubject"]
    try:
        revoked = bit_is_set(subject["encodedList"], int(entry["statusListIndex"]))
    except (StatusListError, KeyError, ValueError) as exc:
        return Check("status", False, f"cannot read the status list: {exc}")
    where = f"index {entry['statusListIndex']} of {entry['statusListCredential']}"
    if revoked:
        return Check("status", False, f"revoked: {where}, list as of {listed['vc']['validFrom']}")
    return Check("status", True, f"not revoked: {where}, list as of {listed['vc']['validFrom']}")
