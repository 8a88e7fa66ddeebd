"""The issuer of portable credentials, and the JSON-LD contexts its credentials use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who signs: `id` is the public base URL of the certification service, `name` the city."""

    id: str
    name: str

    def profile(self) -> dict[str, Any]:
        """The issuer as an OB 3.0 `Profile`."""
        return {"id": self.id, "type": ["Profile"], "name": self.name}
