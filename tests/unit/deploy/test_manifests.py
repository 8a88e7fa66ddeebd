"""Deployment files: structural facts of docker-compose.yml, deploy/k8s and the NATS config.

Parsing only (no container engine, no cluster): probes and security contexts on every workload,
a 3-node JetStream cluster, health-gated start order in compose, every DXT_ variable a real
Settings field, and NATS subject permissions that give each service only its own subjects.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dxtalent_infra.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILES = (ROOT / "docker-compose.yml", DEPLOY / "compose.host.yml")
SERVICES = ("enrollment", "certification", "reporting")
DXT_VARIABLE = re.compile(r"\bDXT_[A-Z0-9_]+\b")


# --- loading --------------------------------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that accepts Compose's `!reset` / `!override` merge tags."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!reset", _tagged)
_ComposeLoader.add_constructor("!override", _tagged)


def _compose(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_ComposeLoader)
    return data


@functools.cache
def _k8s_docs() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/k8s (kustomization.yaml is not one); read once."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name not in ("kustomization.yaml", "kustomizeconfig.yaml"):
            docs.extend(d for d in yaml.load_all(path.read_text(), Loader=loader) if d)
    return docs


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _k8s_docs() if d["kind"] == kind]


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- a reader for the NATS configuration format (the subset deploy/nats uses) ---------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>(?:\#|//)[^\n]*)
      | (?P<punct>[{}\[\],:=])
      | "(?P<dq>[^"]*)"
      | '(?P<sq>[^']*)'
      | (?P<word>[^\s{}\[\],="'#]+)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read NATS config at {text[pos : pos + 40]!r}")
        pos = m.end()
        if m.group("comment") is not None:
            continue
        word = m.group("word")
        if m.group("punct") is not None:
            out.append(m.group("punct"))
        elif word is not None:  # `host:port` is one word, `key:` a key and its separator
            out.extend([word[:-1], ":"] if word.endswith(":") else [word])
        else:
            quoted = m.group("dq") if m.group("dq") is not None else m.group("sq")
            out.append("\0" + quoted)
    return out


def _parse_nats_conf(text: str) -> dict[str, Any]:
    """Maps, arrays, strings, words; `key: value`, `key value`, `key { }`. `$VAR` stays a word."""
    toks = _tokens(text)
    i = 0

    def value() -> Any:
        nonlocal i
        tok = toks[i]
        i += 1
        if tok == "{":
            return mapping("}")
        if tok == "[":
            items: list[Any] = []
            while toks[i] != "]":
                if toks[i] == ",":
                    i += 1
                    continue
                items.append(value())
            i += 1
            return items
        return tok[1:] if tok.startswith("\0") else tok

    def mapping(end: str | None) -> dict[str, Any]:
        nonlocal i
        out: dict[str, Any] = {}
        while i < len(toks) and toks[i] != end:
            if toks[i] == ",":
                i += 1
                continue
            key = toks[i].lstrip("\0")
            i += 1
            if toks[i] in (":", "="):
                i += 1
            out[key] = value()
        i += 1
        return out

    return mapping(None)


def _nats_users() -> dict[str, dict[str, Any]]:
    conf = _parse_nats_conf((DEPLOY / "nats" / "accounts.conf").read_text())
    return {u["user"]: u for u in conf["accounts"]["DX"]["users"]}


def _allowed(user: dict[str, Any], direction: str) -> set[str]:
    return set(user["permissions"][direction]["allow"])


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard semantics: `*` one token, `>` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for k, token in enumerate(p):
        if token == ">":
            return len(s) > k
        if k >= len(s) or (token != "*" and token != s[k]):
            return False
    return len(p) == len(s)


def _may_publish(user: str, subject: str) -> bool:
    return any(_matches(p, subject) for p in _allowed(_nats_users()[user], "publish"))


# --- Kubernetes -------------------------------------------------------------------------------


def test_every_k8s_file_is_in_the_kustomization_or_an_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "kustomizeconfig.yaml"}
    assert files - listed == {"secrets.example.yaml"}
    assert listed <= files


def test_each_service_has_a_deployment_with_probes_and_a_locked_down_pod() -> None:
    deployments = {d["metadata"]["name"]: d for d in _of_kind("Deployment")}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["replicas"] >= 2, name
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod.get("automountServiceAccountToken") is False, name
        (container,) = _containers(deployment)
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert "memory" in container["resources"]["limits"], name
        env = {e["name"]: e for e in container["env"]}
        port = int(env["DXT_HTTP_PORT"]["value"])
        assert container["ports"][0]["containerPort"] == port, name
        assert env["DXT_NATS_USER"]["value"] == name
        for secret in ("DXT_NATS_PASSWORD", "PG_PASSWORD", "DXT_API_TOKEN"):
            assert "secretKeyRef" in env[secret]["valueFrom"], f"{name}: {secret} not a secret"
        assert "$(PG_PASSWORD)" in env["DXT_DATABASE_URL"]["value"]  # the password stays secret


def test_every_workload_has_a_pod_disruption_budget_and_services_have_a_service() -> None:
    budgets = {  # (CloudNativePG makes the PostgreSQL instances' budgets: enablePDB)
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for b in _of_kind("PodDisruptionBudget")
    }
    assert budgets == {*SERVICES, "nats"}
    http = {s["metadata"]["name"] for s in _of_kind("Service")}
    assert set(SERVICES) <= http


def test_nats_is_a_three_node_jetstream_cluster_on_persistent_volumes() -> None:
    (sts,) = _of_kind("StatefulSet")
    assert sts["spec"]["replicas"] == 3
    headless = {s["metadata"]["name"]: s for s in _of_kind("Service")}[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    (container,) = _containers(sts)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/data"
    assert "data" in claims
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (config_map,) = [c for c in _of_kind("ConfigMap") if c["metadata"]["name"] == "nats-config"]
    conf = _parse_nats_conf(config_map["data"]["nats.conf"])
    assert conf["jetstream"]["store_dir"] == "/data/jetstream"
    assert "max_memory_store" in conf["jetstream"]  # file storage is the default; memory capped
    # the route URLs carry the route user's password: built from the Secret in the pod's env
    assert conf["cluster"]["routes"] == [f"$NATS_ROUTE_{n}" for n in range(3)]
    env = {e["name"]: e for e in container["env"]}
    for n in range(3):
        url = f"nats://route:$(NATS_ROUTE_PASSWORD)@nats-{n}.nats-headless:6222"
        assert env[f"NATS_ROUTE_{n}"]["value"] == url
    settings = {c["metadata"]["name"]: c for c in _of_kind("ConfigMap")}["dxtalent-config"]
    assert settings["data"]["DXT_STREAM_REPLICAS"] == "3"


def test_nats_production_settings_follow_the_jepsen_analysis() -> None:
    """Decision 0181: fsync before acknowledging, TLS for clients and routes, routes that
    authenticate, nats-server >= 2.12.3."""
    (config_map,) = [c for c in _of_kind("ConfigMap") if c["metadata"]["name"] == "nats-config"]
    conf = _parse_nats_conf(config_map["data"]["nats.conf"])
    assert conf["jetstream"]["sync_interval"] == "always"
    assert {"cert_file", "key_file", "ca_file"} <= set(conf["tls"])
    assert conf["cluster"]["tls"]["verify"] == "true"  # the reader keeps values as text
    assert conf["cluster"]["authorization"] == {
        "user": "route",
        "password": "$NATS_ROUTE_PASSWORD",
        "timeout": "5",
    }
    (sts,) = _of_kind("StatefulSet")
    (container,) = _containers(sts)
    version = container["image"].split(":")[1].split("-")[0]
    assert tuple(int(p) for p in version.split(".")) >= (2, 12, 3), container["image"]
    compose = _compose(ROOT / "docker-compose.yml")["services"]["nats"]["image"]
    version = compose.split(":")[1].split("-")[0]
    assert tuple(int(p) for p in version.split(".")) >= (2, 12, 3), compose
    for name in ("nats.conf", "nats.host.conf"):
        assert (
            _parse_nats_conf((DEPLOY / "nats" / name).read_text())["jetstream"]["sync_interval"]
            == "always"
        ), name


def test_the_cluster_uses_the_same_accounts_as_compose() -> None:
    (config_map,) = [c for c in _of_kind("ConfigMap") if c["metadata"]["name"] == "nats-config"]
    assert config_map["data"]["accounts.conf"] == (DEPLOY / "nats" / "accounts.conf").read_text()


def test_referenced_secrets_and_config_maps_are_defined() -> None:
    defined = {(d["kind"], d["metadata"]["name"]) for d in _k8s_docs()}
    for node in _walk(_k8s_docs()):
        if isinstance(node, dict) and "secretKeyRef" in node:
            assert ("Secret", node["secretKeyRef"]["name"]) in defined
        if isinstance(node, dict) and "configMapRef" in node:
            assert ("ConfigMap", node["configMapRef"]["name"]) in defined
    secrets = {d["metadata"]["name"]: d for d in _of_kind("Secret")}
    for node in _walk(_k8s_docs()):
        if isinstance(node, dict) and "secretKeyRef" in node:
            ref = node["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]]["stringData"], ref


# --- docker-compose ---------------------------------------------------------------------------


def test_compose_services_are_health_checked_and_start_in_order() -> None:
    services = _compose(ROOT / "docker-compose.yml")["services"]
    assert set(services) == {"nats", "postgres", "provision", *SERVICES}
    for name, service in services.items():
        if name != "provision":  # a one-shot job: it exits
            assert service["healthcheck"]["test"], name
    provision = services["provision"]
    assert provision["command"] == ["provision"]
    assert provision["environment"]["DXT_NATS_USER"] == "admin"
    assert provision["depends_on"] == {"nats": {"condition": "service_healthy"}}
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["serve", name]
        # not on `provision` (podman cannot start a container requiring an exited one): the
        # services wait for the streams themselves
        assert service["depends_on"] == {
            "nats": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }
        assert service["read_only"] is True
        env = service["environment"]
        assert env["DXT_NATS_USER"] == name
        assert env["DXT_HTTP_HOST"] == "0.0.0.0"
        assert env["DXT_DATABASE_URL"].startswith(f"postgresql://dxt_{name}:")


def test_compose_nats_uses_jetstream_file_storage_on_a_volume() -> None:
    compose = _compose(ROOT / "docker-compose.yml")
    nats = compose["services"]["nats"]
    assert any(v.startswith("nats-data:/data") for v in nats["volumes"])
    conf = _parse_nats_conf((DEPLOY / "nats" / "nats.conf").read_text())
    assert conf["jetstream"]["store_dir"] == "/data/jetstream"
    assert conf["include"] == "./accounts.conf"
    host = _parse_nats_conf((DEPLOY / "nats" / "nats.host.conf").read_text())
    assert host["listen"].startswith("127.0.0.1:")
    assert host["http"].startswith("127.0.0.1:")
    assert host["jetstream"] == conf["jetstream"]


def test_host_networking_override_stays_on_loopback() -> None:
    override = _compose(DEPLOY / "compose.host.yml")["services"]
    for name in SERVICES:
        env = override[name]["environment"]
        assert override[name]["network_mode"] == "host"
        assert env["DXT_HTTP_HOST"] == "127.0.0.1"
        assert "@127.0.0.1:" in env["DXT_DATABASE_URL"]
        assert env["DXT_NATS_URL"].startswith("nats://127.0.0.1:")


class _Tagged(list[Any]):
    """A list the override file marks `!override` / `!reset`: it replaces, never merges."""


class _TagKeepingLoader(yaml.SafeLoader):
    """Like _ComposeLoader, but a tagged sequence stays recognisable as one."""


def _keep_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return _Tagged(loader.construct_sequence(node))
    return _tagged(loader, node)


_TagKeepingLoader.add_constructor("!reset", _keep_tag)
_TagKeepingLoader.add_constructor("!override", _keep_tag)

#: lists compose merges on purpose (a mount more) or replaces anyway (command, entrypoint)
_MERGED_OR_REPLACED = {"volumes", "command", "entrypoint"}


def _lists_merged_into_base(base: Any, override: Any, path: str = "") -> Iterator[str]:
    if isinstance(base, dict) and isinstance(override, dict):
        for key, value in override.items():
            if key in base and key not in _MERGED_OR_REPLACED:
                yield from _lists_merged_into_base(base[key], value, f"{path}.{key}")
    elif (
        isinstance(base, list) and isinstance(override, list) and not isinstance(override, _Tagged)
    ):
        yield path


def test_the_host_override_replaces_lists_instead_of_appending_to_them() -> None:
    """Compose (and podman-compose) append an override's list to the base's: two health-check
    `test` lists become one that podman-compose refuses ('CMD-SHELL' takes a single string).
    Every list the override shares with the base must say `!override` or `!reset`."""
    base = yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=_TagKeepingLoader)
    override = yaml.load((DEPLOY / "compose.host.yml").read_text(), Loader=_TagKeepingLoader)
    assert list(_lists_merged_into_base(base, override)) == []
    tests = [override["services"][s]["healthcheck"]["test"] for s in ("nats", "postgres")]
    assert all(isinstance(t, _Tagged) for t in tests)
    assert override["x-podman"]["in_pod"] is False  # host networking cannot join a pod


# --- configuration cannot drift from Settings -------------------------------------------------


def _settings_variables() -> set[str]:
    return {f"DXT_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize(
    "path",
    [*COMPOSE_FILES, *sorted(K8S.glob("*.yaml")), DEPLOY / "Dockerfile", DEPLOY / "env.example"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_dxt_variable_is_a_settings_field(path: Path) -> None:
    used = set(DXT_VARIABLE.findall(path.read_text()))
    unknown = used - _settings_variables() - {"DXT_IMAGE"}  # DXT_IMAGE: compose's image name
    assert not unknown, f"{path.name} uses variables Settings does not read: {sorted(unknown)}"


def test_the_settings_variables_the_services_need_are_set_everywhere() -> None:
    needed = {"DXT_NATS_URL", "DXT_DATABASE_URL", "DXT_NATS_USER", "DXT_NATS_PASSWORD"}
    needed |= {"DXT_API_TOKEN", "DXT_HTTP_HOST", "DXT_HTTP_PORT"}
    services = _compose(ROOT / "docker-compose.yml")["services"]
    config = {c["metadata"]["name"]: c for c in _of_kind("ConfigMap")}["dxtalent-config"]["data"]
    for name in SERVICES:
        assert needed <= set(services[name]["environment"]), name
    for deployment in _of_kind("Deployment"):
        (container,) = _containers(deployment)
        assert needed <= {e["name"] for e in container["env"]} | set(config)


# --- NATS permissions (guarantee 8) -----------------------------------------------------------


def test_nats_config_reader() -> None:
    conf = _parse_nats_conf('a: 1\nb { c: [x, "y z", $V] } # note\nd = "q" // more')
    assert conf == {"a": "1", "b": {"c": ["x", "y z", "$V"]}, "d": "q"}
    assert _matches("dx.events.>", "dx.events.a.b")
    assert not _matches("dx.events.>", "dx.events")
    assert _matches("$JS.ACK.S.c.>", "$JS.ACK.S.c.1.2.3")
    assert not _matches("a.*", "a.b.c")


def test_every_nats_user_has_a_password_from_the_environment() -> None:
    users = _nats_users()
    assert set(users) == {*SERVICES, "hr", "ops", "admin", "backup"}
    for name, user in users.items():
        assert user["password"] == f"$NATS_{name.upper()}_PASSWORD", name


@pytest.mark.parametrize(
    ("user", "subject", "allowed"),
    [
        ("enrollment", "dx.events.enrollment.course-completed", True),
        ("enrollment", "dx.deadletter.inbound", True),
        ("enrollment", "dx.events.certification.level-certified", False),
        ("enrollment", "dx.inbound.completion", True),  # its HTTP doors publish facts
        ("enrollment", "$JS.ACK.DX_INBOUND.enrollment.1.2.3.4.5.6", True),
        ("enrollment", "$JS.ACK.DX_EVENTS.certification.1.2.3.4.5.6", False),
        ("enrollment", "$JS.API.CONSUMER.CREATE.DX_INBOUND.enrollment.dx.inbound.>", True),
        ("enrollment", "$JS.API.CONSUMER.CREATE.DX_EVENTS.reporting", False),
        ("enrollment", "$JS.API.STREAM.DELETE.DX_EVENTS", False),
        ("certification", "dx.events.certification.level-certified", True),
        ("certification", "dx.events.enrollment.course-completed", False),
        ("certification", "$JS.API.CONSUMER.MSG.NEXT.DX_EVENTS.certification", True),
        ("certification", "$JS.API.CONSUMER.MSG.NEXT.DX_INBOUND.enrollment", False),
        ("reporting", "dx.events.reporting.anything", False),
        ("reporting", "dx.events.enrollment.course-completed", False),
        ("reporting", "$JS.ACK.DX_EVENTS.reporting.1.2.3.4.5.6", True),
        ("hr", "dx.inbound.completion", True),
        ("hr", "dx.events.enrollment.course-completed", False),
        ("hr", "$JS.API.STREAM.INFO.DX_INBOUND", False),
        ("enrollment", "$JS.API.STREAM.CREATE.DX_INBOUND", False),  # `dxtalent provision`
        ("reporting", "$JS.API.STREAM.UPDATE.DX_DEADLETTER", False),
        ("ops", "$JS.API.STREAM.INFO.DX_DEADLETTER", True),
        ("ops", "$JS.API.STREAM.MSG.DELETE.DX_DEADLETTER", True),  # after a re-drive
        ("ops", "$JS.API.STREAM.DELETE.DX_DEADLETTER", False),
        ("ops", "$JS.API.STREAM.PURGE.DX_DEADLETTER", False),
        ("ops", "$JS.API.STREAM.UPDATE.DX_DEADLETTER", False),
        ("ops", "$JS.API.CONSUMER.MSG.NEXT.DX_EVENTS.certification", False),
        ("admin", "$JS.API.STREAM.CREATE.DX_EVENTS", True),
        ("admin", "dx.events.enrollment.course-completed", False),
    ],
)
def test_nats_publish_permissions(user: str, subject: str, allowed: bool) -> None:
    assert _may_publish(user, subject) is allowed


def test_services_publish_events_only_under_their_own_name() -> None:
    """ops may re-drive dead letters of events (their original subject); nobody else
    publishes another's events. Each user subscribes to its own inbox prefix only."""
    for name, user in _nats_users().items():
        events = {s for s in _allowed(user, "publish") if s.startswith("dx.events.")}
        assert events <= ({"dx.events.>"} if name == "ops" else {f"dx.events.{name}.>"}), name
        assert _allowed(user, "subscribe") == {f"_INBOX_{name}.>"}, name


def test_compose_gives_nats_every_password_its_accounts_need() -> None:
    """nats-server refuses to start without the password of any user in accounts.conf, and
    the smoke test generates every secret deploy/env.example names."""
    wanted = {f"NATS_{name.upper()}_PASSWORD" for name in _nats_users()}
    nats_env = _compose(ROOT / "docker-compose.yml")["services"]["nats"]["environment"]
    assert wanted <= set(nats_env), sorted(wanted - set(nats_env))
    example = (DEPLOY / "env.example").read_text()
    assert all(f"\n{name}=" in example for name in wanted), example
