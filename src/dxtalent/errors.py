"""Mistakes a person makes with the CLI, told in one line on stderr instead of a traceback.

Every command raises `UserError` (or a subclass) for what the person can fix — a file that is
not there, a setting out of range, a server that does not answer, a token the service refuses —
with a message that says what is wrong and what to do. `UserErrorGroup`, the command group of
`dxtalent`, prints it as `error: <message>` and exits with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError
from typer.core import TyperGroup

from dxtalent_contracts.catalog import Catalog, CatalogError, load_catalog
from dxtalent_infra.servers import ServerStartError
from dxtalent_infra.settings import Settings


class UserError(Exception):
    """Something the person running the command can fix; the message says what and how."""


def token_refused(service: str, url: str) -> str:
    """What a 401 from a service's `/v1` query means for the person who ran the command."""
    return (
        f"the {service} service refused the token (401 at {url}); set DXT_API_TOKEN to the "
        "token the services were started with"
    )


def nats_refused(url: str, user: str | None, creds: str | None) -> str:
    """What an Authorization Violation from NATS means for the person who ran the command."""
    if creds is not None:
        who = f"the credentials in {creds} (DXT_NATS_CREDS)"
    elif user is not None:
        who = f"user {user!r} with the password in DXT_NATS_PASSWORD"
    else:
        who = "a connection without credentials"
    return (
        f"NATS at {url} refused {who} (Authorization Violation); set DXT_NATS_USER and "
        "DXT_NATS_PASSWORD, or DXT_NATS_CREDS, to an account of that server, as for the services"
    )


class UserErrorGroup(TyperGroup):
    """The `dxtalent` group: a `UserError` from any (sub)command becomes one line and exit 1,
    and so does an embedded server that cannot start (e.g. not installed in this image)."""

    def invoke(self, ctx: typer._click.core.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, ServerStartError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None


def load_settings() -> Settings:
    """The DXT_ settings, or a UserError naming each variable that has a bad value."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"DXT_{'_'.join(str(p) for p in e['loc']).upper()}={e['input']!r}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise UserError(f"bad setting {problems}; fix or unset it") from None


def _catalog_problem(exc: CatalogError) -> str:
    """The first problem of a catalog error, on one line."""
    cause = exc.__cause__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None:
        origin = str(exc).split(": not valid YAML", 1)[0]
        return f"{origin}:{cause.problem_mark.line + 1}: not valid YAML: {cause.problem}"
    lines = str(exc).splitlines()
    more = f" (and {len(lines) - 2} more problems)" if len(lines) > 2 else ""
    return (lines[1] if len(lines) > 1 else lines[0]) + more


def load_catalog_for(settings: Settings) -> Catalog:
    """The configured catalog (DXT_CATALOG, else the default), or a UserError in one line."""
    try:
        return load_catalog(settings.catalog)
    except CatalogError as exc:
        raise UserError(
            f"catalog {_catalog_problem(exc)}; fix the file, or unset DXT_CATALOG for the default"
        ) from None


def read_input(file: str, stdin_text: str | None = None) -> str:
    """The text of `file` (UTF-8, BOM allowed), or stdin's for `-`; a UserError if unreadable."""
    if file == "-":
        return stdin_text if stdin_text is not None else sys.stdin.read()
    path = Path(file)
    try:
        return path.read_text("utf-8-sig")
    except FileNotFoundError:
        raise UserError(
            f"{file}: no such file; give the path of the facts file, or - for stdin"
        ) from None
    except IsADirectoryError:
        raise UserError(f"{file}: is a directory; give the path of the facts file") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UserError(f"{file}: cannot read it: {exc.strerror}") from None
