"""One settings class for every service, from `DXT_` environment variables (see README)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NATS_SCHEMES = ("nats", "tls")


def nats_servers(url: str) -> list[str]:
    """The servers of a `DXT_NATS_URL`: one URL, or a comma-separated list of a cluster's
    (`nats://n1:4222,nats://n2:4222`; `HOST:PORT` means `nats://HOST:PORT`). nats-py and
    FastStream take the list; a client picks one and moves to another when it fails.
    ValueError names an entry that is not a NATS URL."""
    servers = [_with_scheme(part.strip()) for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("no server in it; give nats://HOST:PORT, or several separated by commas")
    for server in servers:
        try:
            parts = urlsplit(server)
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        except ValueError as exc:
            raise ValueError(f"{server!r} is not a URL ({exc})") from None
        if parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise ValueError(
                f"{server!r} is not a NATS URL; write nats://HOST:PORT (tls://HOST:PORT for TLS), "
                "several separated by commas for a cluster"
            )
    return servers


def _with_scheme(server: str) -> str:
    return server if "://" in server else f"nats://{server}"


class Settings(BaseSettings):
    """Configuration of a dxtalent process. Nothing connects when this is built."""

    # an empty variable is an unset one: compose passes `${DXT_CATALOG:-}` through as ""
    model_config = SettingsConfigDict(
        env_prefix="DXT_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    nats_url: str | None = Field(
        default=None,
        description="NATS server, or a cluster's servers separated by commas; unset = embedded",
    )
    database_url: str | None = Field(default=None, description="PostgreSQL DSN; unset = embedded")
    migration_database_url: str | None = Field(
        default=None,
        description="DSN of the migration role (owns the schema, grants the service role its"
        " rights); unset = migrations run over DXT_DATABASE_URL",
    )
    data_dir: Path = Field(
        default=Path(".dxtalent"), description="where embedded servers keep data"
    )
    prefix: str = Field(default="", description="stream/subject prefix (tests, tenants)")
    catalog: Path | None = Field(default=None, description="catalog YAML; unset = Hirakata default")
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(
        default=None, description="HTTP port; unset = per-service default"
    )
    api_token: SecretStr | None = Field(default=None, description="bearer token for /v1 queries")
    ingest_token: SecretStr | None = Field(
        default=None,
        description="token of the HTTP intake (POST /v1/facts, /xapi); unset = intake closed",
    )
    stream_replicas: int = Field(default=1, ge=1, le=5)
    provision_streams: bool = Field(
        default=False,
        description=(
            "services create/update the streams at start (a server without permissions); "
            "otherwise `dxtalent provision` does, with the admin credential"
        ),
    )
    duplicate_window_s: float = Field(default=600.0, gt=0)
    inbox_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="inbox rows older than this are pruned; must exceed DXT_DUPLICATE_WINDOW_S",
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_interval_ms: int | None = Field(
        default=None,
        ge=0,
        le=5_000,
        description=(
            "a consumer's batch starts at least this long after the previous one's start"
            " (0 = at once); unset = the service's default (reporting 100, others 0)"
        ),
    )
    max_deliver: int = Field(default=5, ge=1)
    gc_threshold: int = Field(
        default=50_000,
        ge=700,
        le=1_000_000,
        description=(
            "the cyclic garbage collector's generation-0 threshold (tracked objects allocated"
            " net of those freed before a young collection runs); 700 = Python's default"
        ),
    )
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    shutdown_grace_s: float = Field(
        default=25.0, gt=0, description="SIGTERM: time to finish batches and publish the outbox"
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_json: bool = True
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_creds: Path | None = None
    nats_tls_ca: Path | None = None
    nats_inbox_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="reply subjects' prefix; unset = _INBOX_<DXT_NATS_USER or service name>",
    )

    # portable credentials (Open Badges 3.0): issued only when both are set
    credential_key_file: Path | None = Field(
        default=None, description="PEM private key (Ed25519 or RSA) signing credentials"
    )
    credential_issuer: str | None = Field(
        default=None, description="issuer id: public base URL of the certification service"
    )

    @model_validator(mode="after")
    def _retention_outlives_duplicate_window(self) -> Settings:
        """The inbox is the only duplicate check past the stream's window: it must remember
        every message at least that long, or a redelivery would be applied twice."""
        if self.inbox_retention_s <= self.duplicate_window_s:
            raise ValueError(
                f"DXT_INBOX_RETENTION_S ({self.inbox_retention_s:g} s) must be longer than the"
                f" stream's duplicate window DXT_DUPLICATE_WINDOW_S ({self.duplicate_window_s:g} s)"
            )
        return self

    @field_validator("nats_url")
    @classmethod
    def _nats_servers(cls, value: str | None) -> str | None:
        """Each comma-separated entry is a NATS URL; the list is kept as one clean string."""
        return None if value is None else ",".join(nats_servers(value))

    @property
    def nats_server_list(self) -> list[str] | None:
        """`nats_url` as the list of servers nats-py and FastStream connect to."""
        return None if self.nats_url is None else nats_servers(self.nats_url)

    def inbox_prefix(self, owner: str | None = None) -> str:
        """The prefix of this process's reply subjects (API replies, fetched batches, publish
        acks): DXT_NATS_INBOX_PREFIX, else `_INBOX_<DXT_NATS_USER>`, else `_INBOX_<owner>` (a
        service's name), else nats-py's `_INBOX`. Each NATS user may subscribe to its own prefix
        only (deploy/nats/accounts.conf), so no one else reads its replies."""
        if self.nats_inbox_prefix is not None:
            return self.nats_inbox_prefix
        who = self.nats_user or owner
        return f"_INBOX_{who}" if who else "_INBOX"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        """DXT_LOG_LEVEL=INFO and =info are the same; an unknown level is refused."""
        return value.lower() if isinstance(value, str) else value
