"""`dxtalent credential verify FILE`: is a portable credential genuine, from its issuer, valid?

FILE holds a VC-JWT (or the JSON of one credential as `GET /v1/employees/{id}/credentials`
lists it). The issuer's keys come from `--keys` (a JWK Set or PEM public key, file or URL),
else from `<iss>/.well-known/jwks.json`; the status list from `--status` (file or URL), else
from the URL the credential names. One line per check; exit 1 when any fails.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from dxtalent.errors import UserError, read_input

credential_app = typer.Typer(no_args_is_help=True, help="Portable credentials (Open Badges 3.0).")


def fetch_text(where: str, what: str) -> str:
    """The text of a file or an http(s) URL; a UserError in one line when it cannot be read."""
    if not where.startswith(("http://", "https://")):
        path = Path(where)
        try:
            return path.read_text("utf-8")
        except OSError as exc:
            raise UserError(f"{where}: cannot read the {what}: {exc.strerror}") from None
    try:
        with urllib.request.urlopen(where, timeout=10) as resp:
            return str(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise UserError(f"{where}: the {what} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"{where}: cannot fetch the {what}: {reason}") from None


def token_of(text: str, origin: str) -> str:
    """The compact JWS in a file: the text itself, or the `jwt` member of a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text)["jwt"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{origin}: JSON without a 'jwt' member; give the VC-JWT") from None
    if text.count(".") != 2:
        raise UserError(f"{origin}: not a VC-JWT (header.payload.signature)")
    return text


def jwks_of(text: str, origin: str) -> dict[str, Any]:
    """A JWK Set from its JSON, or from a PEM public key (Ed25519 or RSA)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from dxtalent_certification.vcjwt import public_jwk

    if "-----BEGIN PUBLIC KEY-----" in text:
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise UserError(f"{origin}: not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey | RSAPublicKey):
            raise UserError(f"{origin}: a {type(key).__name__}; expected Ed25519 or RSA")
        return {"keys": [public_jwk(key)]}
    try:
        jwks = json.loads(text)
    except ValueError:
        raise UserError(f"{origin}: neither a JWK Set (JSON) nor a PEM public key") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise UserError(f"{origin}: JSON without a 'keys' list; give the issuer's JWK Set")
    return jwks


def _unverified_claims(token: str, origin: str) -> dict[str, Any]:
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise UserError(f"{origin}: not a VC-JWT: {exc}") from None
    if not isinstance(claims.get("iss"), str):
        raise UserError(f"{origin}: the JWT has no 'iss' claim; it is not a credential")
    return claims


@credential_app.command("verify")
def verify(
    file: Annotated[str, typer.Argument(help="the credential: a VC-JWT file, or - for stdin")],
    keys: Annotated[
        str | None, typer.Option(help="issuer's JWK Set or PEM public key (file or URL)")
    ] = None,
    issuer: Annotated[
        str | None, typer.Option(help="the issuer id the credential must have")
    ] = None,
    status: Annotated[str | None, typer.Option(help="the status list (file or URL)")] = None,
) -> None:
    """Check a credential's signature, issuer and revocation status."""
    from dxtalent_certification.verification import (
        check_issuer,
        check_signature,
        check_status,
        status_of,
    )

    token = token_of(read_input(file) if file == "-" else fetch_text(file, "credential"), file)
    unverified = _unverified_claims(token, file)
    keys = keys or f"{unverified['iss'].rstrip('/')}/.well-known/jwks.json"
    jwks = jwks_of(fetch_text(keys, "issuer's keys"), keys)
    signature, claims = check_signature(token, jwks)
    typer.echo(signature.line())
    if claims is None:
        typer.echo("issuer: FAILED (not checked: the signature does not verify)")
        typer.echo("status: FAILED (not checked: the signature does not verify)")
        raise typer.Exit(1)
    checks = [check_issuer(claims, issuer)]
    entry = status_of(claims)
    where = status or (entry["statusListCredential"] if entry else None)
    if where is None:
        raise UserError(f"{file}: the credential names no status list; pass --status")
    checks.append(check_status(claims, fetch_text(where, "status list").strip(), jwks))
    for check in checks:
        typer.echo(check.line())
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
