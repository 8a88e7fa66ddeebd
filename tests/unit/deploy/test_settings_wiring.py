"""Every setting of the README's configuration table reaches every service container: compose
passes each through from the environment, Kubernetes from the ConfigMap or the Deployment,
and the files a setting names are mounted where the examples point."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dxtalent_infra.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("enrollment", "certification", "reporting")
FILES = "/etc/dxtalent/files"
EVERY_SETTING = {f"DXT_{name.upper()}" for name in Settings.model_fields}


def _k8s(kind: str) -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == kind]
    return docs


def test_the_readme_table_lists_every_setting() -> None:
    """The README's configuration table names exactly the Settings fields."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Configuration", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`(DXT_[A-Z0-9_]+)`", table)) == EVERY_SETTING


@pytest.mark.parametrize("service", SERVICES)
def test_compose_gives_every_setting_to_every_service(service: str) -> None:
    """Each compose service sets or passes through every DXT_ setting, and mounts the files
    directory read-only."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    assert set(compose["environment"]) == EVERY_SETTING
    assert f"./deploy/files:{FILES}:ro" in compose["volumes"]
    assert compose["environment"]["DXT_MAX_DELIVER"] == "${DXT_MAX_DELIVER:-5}"


def test_kubernetes_gives_every_setting_to_every_deployment() -> None:
    """Each Deployment has every DXT_ setting from the shared ConfigMap or its own env, and
    mounts the optional catalog / NATS client files read-only."""
    (config,) = [c for c in _k8s("ConfigMap") if c["metadata"]["name"] == "dxtalent-config"]
    deployments = _k8s("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == set(SERVICES)
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        own = {e["name"] for e in container["env"]} - {
            "PG_PASSWORD",
            "PG_MIGRATOR_PASSWORD",
        }  # DSN parts
        assert {"configMapRef": {"name": "dxtalent-config"}} in container["envFrom"]
        assert own | set(config["data"]) == EVERY_SETTING
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[FILES]["readOnly"] is True
        (files,) = [v for v in pod["volumes"] if v["name"] == mounts[FILES]["name"]]
        # optional, so the pod starts without them, but the NATS CA: NATS requires TLS
        optional = {
            s[kind]["name"]: s[kind].get("optional", False)
            for s in files["projected"]["sources"]
            for kind in s
        }
        assert optional.pop("nats-tls") is False
        assert all(optional.values()), optional


def test_an_empty_variable_is_an_unset_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose's `${DXT_CATALOG:-}` gives "" when the operator sets nothing: the default."""
    monkeypatch.setenv("DXT_CATALOG", "")
    monkeypatch.setenv("DXT_NATS_CREDS", "")
    settings = Settings()
    assert settings.catalog is None
    assert settings.nats_creds is None


def test_the_orchestrators_wait_longer_than_the_shutdown_grace() -> None:
    """Compose's stop_grace_period and each Deployment's terminationGracePeriodSeconds exceed
    DXT_SHUTDOWN_GRACE_S, so a service finishes its batch and outbox before SIGKILL."""
    (config,) = [c for c in _k8s("ConfigMap") if c["metadata"]["name"] == "dxtalent-config"]
    grace = float(config["data"]["DXT_SHUTDOWN_GRACE_S"])
    assert grace == Settings.model_fields["shutdown_grace_s"].default
    for deployment in _k8s("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace, deployment["metadata"]["name"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in SERVICES:
        assert float(compose[service]["stop_grace_period"].removesuffix("s")) > grace, service
