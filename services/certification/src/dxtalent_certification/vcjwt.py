"""VC-JWT: credentials signed as compact JWS (PyJWT + cryptography), keys passed in, no I/O.

A credential is signed as the JWT whose claims are `iss` (the issuer's id), `jti` (the
credential's id), `sub` (its subject's id, when it has one), `nbf` (its `validFrom`) and `vc`
(the credential itself), under a JOSE header `{"alg": "EdDSA" | "RS256", "kid", "typ": "JWT"}`.
`kid` is the RFC 7638 thumbprint of the public key, so a key names itself. Ed25519 signatures
are deterministic: the same credential and key always give the same token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

PublicKey = Ed25519PublicKey | RSAPublicKey


class CredentialKeyError(ValueError):
    """A key that cannot sign credentials: not PEM, encrypted, or neither Ed25519 nor RSA."""


class CredentialInvalidError(ValueError):
    """A token that is not a credential this verifier can trust; the message says why."""


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The public key as a JWK, with `kid` (its thumbprint), `alg` and `use`."""
    if isinstance(key, Ed25519PublicKey):
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key, as_dict=True)
        alg = "EdDSA"
    else:
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        alg = "RS256"
    return {**jwk, "kid": thumbprint(jwk), "alg": alg, "use": "sig"}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the key's required members, base64url without padding."""
    members = ("crv", "kty", "x") if jwk["kty"] == "OKP" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Signer:
    """A private key with the algorithm and key id it signs under."""

    key: Ed25519PrivateKey | RSAPrivateKey
    alg: str
    kid: str

    @classmethod
    def from_pem(cls, pem: bytes, origin: str) -> Signer:
        """The signer of a PEM private key (Ed25519 or RSA); `origin` names it in errors."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise CredentialKeyError(
                f"{origin}: not an unencrypted PEM private key: {exc}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey | RSAPrivateKey):
            raise CredentialKeyError(
                f"{origin}: a {type(key).__name__}; credentials are signed with Ed25519 or RSA"
            )
        jwk = public_jwk(key.public_key())
        return cls(key, jwk["alg"], jwk["kid"])

    def jwks(self) -> dict[str, Any]:
        """The JWK Set a verifier fetches: this signer's public key."""
        return {"keys": [public_jwk(self.key.public_key())]}

    def sign(self, credential: dict[str, Any]) -> str:
        """The credential as a VC-JWT (see the module docstring)."""
        claims: dict[str, Any] = {
            "iss": credential["issuer"]["id"],
            "jti": credential["id"],
            "nbf": int(dt.datetime.fromisoformat(credential["validFrom"]).timestamp()),
        }
        subject = credential["credentialSubject"].get("id")
        if subject is not None:
            claims["sub"] = subject
        claims["vc"] = credential
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)


def header_of(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise CredentialInvalidError(f"not a compact JWS: {exc}") from None


def verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims of `token` once its signature checks against the key of `jwks` its `kid`
    names, and its `vc` claim agrees with `iss` and `jti`."""
    header = header_of(token)
    try:
        keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    except jwt.PyJWKError as exc:
        raise CredentialInvalidError(f"the issuer's keys are not a JWK Set: {exc}") from None
    key = keys.get(header.get("kid"))
    if key is None:
        raise CredentialInvalidError(f"no key with kid {header.get('kid')!r} among the issuer's")
    if header.get("alg") not in ("EdDSA", "RS256"):
        raise CredentialInvalidError(f"algorithm {header.get('alg')!r} is not EdDSA or RS256")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.key, algorithms=[header["alg"]], options={"require": ["iss", "jti", "nbf"]}
        )
    except jwt.InvalidTokenError as exc:
        raise CredentialInvalidError(f"signature does not verify: {exc}") from None
    vc = claims.get("vc")
    if not isinstance(vc, dict) or vc.get("id") != claims["jti"]:
        raise CredentialInvalidError("the vc claim is missing or its id is not the jti claim")
    issuer = vc.get("issuer")
    issuer_id = issuer.get("id") if isinstance(issuer, dict) else issuer
    if issuer_id != claims["iss"]:
        raise CredentialInvalidError(f"iss {claims['iss']!r} is not vc.issuer {issuer_id!r}")
    return claims
