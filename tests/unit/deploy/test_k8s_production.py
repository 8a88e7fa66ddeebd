"""The production pieces of deploy/k8s, checked offline (decisions 0211-0213).

- Core kinds validate against the Kubernetes API schemas (kubernetes-validate bundles them),
  file by file and, where `kubectl` is installed, as `kubectl kustomize` renders the default
  and the external-PostgreSQL overlay.
- The CloudNativePG Cluster, ObjectStore and ScheduledBackup carry the fields the operator's
  documentation requires for what we promise: 3 instances, synchronous replication that
  never acknowledges an unreplicated commit, the roles of deploy/postgres/roles.sql with
  passwords from basic-auth Secrets, WAL archiving plus nightly base backups (point in time).
- Every image goes through kustomization.yaml's `images:`, and pinning them all leaves no
  image without a digest.
- NetworkPolicies: everything of ours denied by default; HTTP only from the ingress and
  monitoring namespaces; egress only to NATS, PostgreSQL and DNS.
- The JetStream backup CronJob snapshots exactly the streams the services create.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kubernetes_validate import SchemaNotFoundError, validate

from dxtalent_infra.topology import ALL_STREAMS

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAY = ROOT / "deploy" / "k8s-overlays" / "external-postgres"
SERVICES = ("enrollment", "certification", "reporting")
K8S_VERSION = "1.32"
CNPG_KINDS = {"Cluster", "ScheduledBackup", "ObjectStore"}
BARMAN = "barman-cloud.cloudnative-pg.io"
NOT_MANIFESTS = {"kustomization.yaml", "kustomizeconfig.yaml"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@functools.cache
def _docs() -> list[dict[str, Any]]:
    """Every object of deploy/k8s, the example Secrets included."""
    return [d for p in sorted(K8S.glob("*.yaml")) if p.name not in NOT_MANIFESTS for d in _load(p)]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in _docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def _secrets() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs() if d["kind"] == "Secret"}


def _pin_images() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pin_images", K8S / "pin_images.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pin_images"] = module
    spec.loader.exec_module(module)
    return module


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: rendering with kustomize is not checked here")
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _validate_core(docs: list[dict[str, Any]]) -> list[str]:
    """Core kinds against the API schemas (strict: no unknown fields); CRDs are left to the
    field checks below. Returns the kinds validated."""
    checked = []
    for doc in docs:
        if doc["kind"] in CNPG_KINDS:
            continue
        try:
            validate(doc, K8S_VERSION, strict=True)
        except SchemaNotFoundError:  # pragma: no cover - every kind we use has a schema
            pytest.fail(f"no schema for {doc['apiVersion']} {doc['kind']}")
        checked.append(doc["kind"])
    return checked


# --- Kubernetes API schemas -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [p for p in sorted(K8S.glob("*.yaml")) if p.name not in NOT_MANIFESTS], ids=str
)
def test_each_file_validates_against_the_kubernetes_schemas(path: Path) -> None:
    _validate_core(_load(path))


@pytest.mark.parametrize("directory", [K8S, OVERLAY], ids=["default", "external-postgres"])
def test_the_rendered_kustomization_validates(directory: Path) -> None:
    docs = _kustomize(directory)
    kinds = set(_validate_core(docs))
    assert {"Deployment", "StatefulSet", "CronJob", "NetworkPolicy", "Namespace"} <= kinds
    assert all(
        d["metadata"].get("namespace") == "dxtalent" for d in docs if d["kind"] != "Namespace"
    )
    cnpg = {d["kind"] for d in docs} & CNPG_KINDS
    assert cnpg == (CNPG_KINDS if directory == K8S else set())


def test_the_external_postgres_overlay_takes_the_dsn_from_a_secret() -> None:
    for doc in _kustomize(OVERLAY):
        if doc["kind"] == "Deployment":
            env = {e["name"]: e for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert "PG_PASSWORD" not in env
            ref = env["DXT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "dxtalent-database"
            assert ref["key"] in _secrets()["dxtalent-database"]["stringData"]


# --- CloudNativePG ----------------------------------------------------------------------------


def _roles_in_roles_sql() -> set[str]:
    return set(re.findall(r"\bdxt_[a-z]+\b", (ROOT / "deploy/postgres/roles.sql").read_text()))


def test_postgres_is_a_three_instance_cluster_with_required_synchronous_replication() -> None:
    cluster = _one("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["storage"]["size"]
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    sync = spec["postgresql"]["synchronous"]
    assert sync["method"] in {"any", "first"}
    assert 1 <= sync["number"] < spec["instances"]
    assert sync["dataDurability"] == "required"
    assert spec["enableSuperuserAccess"] is False


def test_postgres_roles_mirror_roles_sql_with_passwords_from_basic_auth_secrets() -> None:
    spec = _one("Cluster")["spec"]
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert set(roles) == {"dxt_migrator", *(f"dxt_{s}" for s in SERVICES)}
    assert _roles_in_roles_sql() <= set(roles)
    secrets = _secrets()
    for name, role in roles.items():
        assert role["ensure"] == "present"
        assert role["login"] is True
        for right in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            assert role[right] is False, (name, right)
        secret = secrets[role["passwordSecret"]["name"]]
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert secret["stringData"]["username"] == name
        assert "password" in secret["stringData"]
    initdb = spec["bootstrap"]["initdb"]
    assert initdb["database"] == "dxtalent"
    assert initdb["owner"] == "dxt_migrator"
    assert initdb["secret"]["name"] == roles["dxt_migrator"]["passwordSecret"]["name"]
    sql = " ".join(initdb["postInitApplicationSQL"])
    for schema in SERVICES:
        assert f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION dxt_migrator" in sql


def test_postgres_archives_wal_and_backs_up_nightly_for_point_in_time_recovery() -> None:
    cluster = _one("Cluster")
    (plugin,) = [p for p in cluster["spec"]["plugins"] if p["name"] == BARMAN]
    assert plugin["isWALArchiver"] is True  # continuous WAL: any point between base backups
    store = _one("ObjectStore", plugin["parameters"]["barmanObjectName"])
    assert store["apiVersion"] == "barmancloud.cnpg.io/v1"
    assert re.fullmatch(r"\d+[dwm]", store["spec"]["retentionPolicy"])
    config = store["spec"]["configuration"]
    assert config["destinationPath"].startswith(("s3://", "gs://", "https://"))
    assert "serverName" not in config  # the plugin's docs: leave it empty in the ObjectStore
    secrets = _secrets()
    for ref in config["s3Credentials"].values():
        assert ref["key"] in secrets[ref["name"]]["stringData"]
    backup = _one("ScheduledBackup")
    assert backup["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = backup["spec"]
    assert spec["cluster"]["name"] == cluster["metadata"]["name"]
    assert spec["method"] == "plugin"
    assert spec["pluginConfiguration"]["name"] == BARMAN
    assert len(spec["schedule"].split()) == 6  # CloudNativePG's cron has a seconds field


def test_services_reach_the_cluster_with_their_role_and_verify_its_certificate() -> None:
    cluster = _one("Cluster")["metadata"]["name"]
    for service in SERVICES:
        pod = _one("Deployment", service)["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        names = [e["name"] for e in pod["containers"][0]["env"]]
        assert names.index("PG_PASSWORD") < names.index("DXT_DATABASE_URL")  # $(...) order
        ref = env["PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"dxtalent-pg-{service}", "key": "password"}
        url = env["DXT_DATABASE_URL"]["value"]
        assert url.startswith(f"postgresql://dxt_{service}:$(PG_PASSWORD)@{cluster}-rw:5432/")
        assert "sslmode=verify-full" in url
        (files,) = [v for v in pod["volumes"] if v["name"] == "files"]
        ca = [s["secret"] for s in files["projected"]["sources"] if "secret" in s]
        assert any(s["name"] == f"{cluster}-ca" for s in ca)


# --- images -----------------------------------------------------------------------------------


def _images(docs: list[dict[str, Any]]) -> list[str]:
    found = []
    for doc in docs:
        if doc["kind"] == "Cluster":
            found.append(doc["spec"]["imageName"])
        pod = doc.get("spec", {}).get("template", {}).get("spec") or doc.get("spec", {}).get(
            "jobTemplate", {}
        ).get("spec", {}).get("template", {}).get("spec")
        for container in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
            found.append(container["image"])
    return found


def test_every_image_goes_through_the_kustomization_images() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    logical = {i["name"] for i in kustomization["images"]}
    used = {re.split(r"[:@]", image)[0] for image in _images(_docs())}
    assert used == logical
    assert {"dxtalent", "nats", "nats-box", "postgresql"} <= used


def test_pinning_leaves_no_image_without_a_digest(tmp_path: Path) -> None:
    pin_images = _pin_images()
    text = (K8S / "kustomization.yaml").read_text()
    kustomization = yaml.safe_load(text)
    assert pin_images.unpinned(kustomization)  # the repository holds tags until a release pins
    for n, image in enumerate(kustomization["images"]):
        digest = f"sha256:{n:064x}"
        text = pin_images.pin(text, image["name"], image["newName"], digest, image.get("newTag"))
    pinned = yaml.safe_load(text)
    assert pin_images.unpinned(pinned) == []
    assert [i["name"] for i in pinned["images"]] == [i["name"] for i in kustomization["images"]]
    for k8s_file in K8S.glob("*.y*ml"):
        (tmp_path / k8s_file.name).write_text(k8s_file.read_text())
    (tmp_path / "kustomization.yaml").write_text(text)
    rendered = _images(_kustomize(tmp_path))
    assert rendered
    assert all(re.fullmatch(r"[a-z0-9./-]+@sha256:[0-9a-f]{64}", i) for i in rendered), rendered
    check = pin_images.main(["--check", "--kustomization", str(tmp_path / "kustomization.yaml")])
    assert check == 0


def test_a_reference_splits_into_name_tag_and_digest() -> None:
    split = _pin_images().split_ref
    assert split("reg:5000/dxtalent:0.2.0") == ("reg:5000/dxtalent", "0.2.0", None)
    assert split("nats@sha256:ab") == ("nats", None, "sha256:ab")
    assert split("docker.io/library/nats:2.11-alpine@sha256:ab") == (
        "docker.io/library/nats",
        "2.11-alpine",
        "sha256:ab",
    )


# --- network policies -------------------------------------------------------------------------


def _policies() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"] for d in _docs() if d["kind"] == "NetworkPolicy"}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _pod_labels() -> dict[str, dict[str, str]]:
    """The pod labels of every workload of ours (Deployments, the StatefulSet, the CronJob)."""
    labels = {}
    for doc in _docs():
        template = doc.get("spec", {}).get("template") or doc.get("spec", {}).get(
            "jobTemplate", {}
        ).get("spec", {}).get("template")
        if template:
            labels[doc["metadata"]["name"]] = template["metadata"]["labels"]
    return labels


def test_every_pod_of_ours_is_denied_by_default() -> None:
    deny = _policies()["default-deny"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    pods = _pod_labels()
    assert {*SERVICES, "nats", "nats-backup"} <= set(pods)
    for name, labels in pods.items():
        assert _selects(deny["podSelector"], labels), name


def test_service_http_answers_only_the_ingress_and_monitoring_namespaces() -> None:
    policies = _policies()
    pods = _pod_labels()
    for service in SERVICES:
        rules = [
            rule
            for spec in policies.values()
            if "Ingress" in spec["policyTypes"] and _selects(spec["podSelector"], pods[service])
            for rule in spec.get("ingress", [])
        ]
        namespaces = {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for rule in rules
            for peer in rule["from"]
        }
        assert namespaces == {"ingress-nginx", "monitoring"}, service
        assert all(peer.keys() == {"namespaceSelector"} for r in rules for peer in r["from"])


def test_services_reach_only_nats_postgres_and_dns() -> None:
    pods = _pod_labels()
    for service in SERVICES:
        ports = {
            port["port"]
            for spec in _policies().values()
            if "Egress" in spec["policyTypes"] and _selects(spec["podSelector"], pods[service])
            for rule in spec.get("egress", [])
            for port in rule["ports"]
        }
        assert ports == {4222, 5432, 53}, service


# --- JetStream backups ------------------------------------------------------------------------


def test_jetstream_backups_snapshot_every_stream_nightly() -> None:
    cron = _one("CronJob", "nats-backup")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["STREAMS"]["value"].split() == [s.name for s in ALL_STREAMS]
    # as user backup, over TLS, replies on its own inbox prefix (deploy/nats/accounts.conf)
    assert 'nats --inbox-prefix _INBOX_backup stream backup "$stream"' in container["args"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "backups"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert _one("PersistentVolumeClaim", claim)
    assert mounts["backups"] == "/backups"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    for key in ("user", "password"):
        assert key in _secrets()["nats-backup-credentials"]["stringData"]
