"""One settings class for every service, from `DXT_` environment variables (see README)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of a dxtalent process. Nothing connects when this is built."""

    # an empty variable is an unset one: compose passes `${DXT_CATALOG:-}` through as ""
    model_config = SettingsConfigDict(
        env_prefix="DXT_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    nats_url: str | None = Field(default=None, description="NATS server; unset = embedded")
    database_url: str | None = Field(default=None, description="PostgreSQL DSN; unset = embedded")
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
    batch_size: int = Field(default=500, ge=1, le=10_000)
    max_deliver: int = Field(default=5, ge=1)
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
