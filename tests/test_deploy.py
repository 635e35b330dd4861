"""The deployment files, checked offline (no container engine or cluster here).

``deploy/kubernetes`` renders with ``kubectl kustomize`` and every document validates against
the Kubernetes schemas in strict mode (``kubernetes-validate``: unknown fields are errors); the
assertions are on what a replica set needs (replicas, probes, non-root, the Secret feeding the
state settings, PDB and HPA aimed at the Deployment). ``deploy/compose.yaml`` parses and wires
HAProxy, Redis and three replicas; HAProxy accepts ``deploy/haproxy.cfg``; the router config
files shipped with both load as ``mcp-router check`` loads them.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mcp_router.config import load_config
from mcp_router.settings import load_settings
from support import ROOT

DEPLOY = ROOT / "deploy"
KUSTOMIZE_DIR = DEPLOY / "kubernetes"
# The oldest release with the preStop `sleep` action on by default, and the newest shipped.
K8S_VERSIONS = ("1.30.0", "1.37.0")
KUBECTL = shutil.which("kubectl")
LABELS = {"app.kubernetes.io/name": "mcp-router", "app.kubernetes.io/component": "gateway"}


def kustomize() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/kubernetes``, as documents."""
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(KUSTOMIZE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def listed_resources() -> list[dict[str, Any]]:
    """The documents of the files ``kustomization.yaml`` lists, as written."""
    kustomization = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((KUSTOMIZE_DIR / name).read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What ``kubectl apply -k`` would apply. Without kubectl (CI images may lack it): the
    listed files as written, which the kustomization changes only by a ``part-of`` label
    (checked where kubectl exists, below)."""
    return kustomize() if KUBECTL is not None else listed_resources()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_kustomize_renders_the_listed_files_plus_the_part_of_label() -> None:
    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return (doc["kind"], doc["metadata"]["name"])

    written = {key(d): d for d in listed_resources()}
    rendered = {key(d): d for d in kustomize()}
    assert rendered.keys() == written.keys()
    for name, doc in rendered.items():
        assert doc["metadata"]["labels"].pop("app.kubernetes.io/part-of") == "mcp-router"
        assert doc == written[name], name


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def router_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment", "mcp-router")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


# ----------------------------------------------------------------------------- kubernetes


def test_the_base_renders_every_resource_kind(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "Service",
            "StatefulSet",
        ]
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_document_validates_strictly(
    rendered: list[dict[str, Any]], version: str
) -> None:
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_an_unknown_field(rendered: list[dict[str, Any]]) -> None:
    """Guards the check above: a misspelt key is an error, not silently ignored."""
    broken = copy.deepcopy(one(rendered, "Deployment", "mcp-router"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_the_deployment_runs_three_replicas_of_the_image_over_http(
    rendered: list[dict[str, Any]],
) -> None:
    deployment = one(rendered, "Deployment", "mcp-router")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"]["matchLabels"] == LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= LABELS.items()
    container = router_container(rendered)
    assert container["image"] == "mcp-router:latest"
    assert container["command"] == ["mcp-router"]
    assert container["args"] == ["--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    service = one(rendered, "Service", "mcp-router")
    assert service["spec"]["selector"] == LABELS
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["sessionAffinity"] == "None"  # shared state: no stickiness needed


def test_probes_are_ready_and_health(rendered: list[dict[str, Any]]) -> None:
    container = router_container(rendered)
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_the_pods_run_as_the_images_non_root_user_with_nothing_writable_but_volumes(
    rendered: list[dict[str, Any]],
) -> None:
    pod = one(rendered, "Deployment", "mcp-router")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # the image's final USER (the runtime stage's)
    uid = re.findall(r"^USER (\d+)$", (ROOT / "Containerfile").read_text(), re.M)[-1]
    assert pod["securityContext"]["runAsUser"] == int(uid) == 1001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = router_container(rendered)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "limits" in router_container(rendered)["resources"]
    # Redis too runs as a non-root user with a read-only root and no capabilities.
    redis = one(rendered, "StatefulSet", "mcp-router-redis")["spec"]["template"]["spec"]
    assert redis["securityContext"]["runAsNonRoot"] is True
    assert redis["securityContext"]["runAsUser"] != 0
    (redis_container,) = redis["containers"]
    assert redis_container["image"].startswith("redis:7")
    assert redis_container["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis_container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_secret_feeds_the_state_settings_and_the_tokens(
    rendered: list[dict[str, Any]],
) -> None:
    secret = one(rendered, "Secret", "mcp-router-secrets")
    env = env_of(router_container(rendered))
    for variable in ("MCP_STATE_URL", "MCP_STATE_KEY", "MCP_AUTH_TOKENS"):
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mcp-router-secrets"
        assert ref["key"] in secret["stringData"], variable
    values = secret["stringData"]
    assert all("REPLACE-ME" in v for v in values.values())  # examples, clearly marked
    # The example values are acceptable to the router's own settings checks.
    settings = load_settings(
        state_url=values["state-url"],
        state_key=values["state-key"],
        auth_tokens=values["auth-tokens"],
    )
    assert len(settings.state_key or "") >= 32
    assert settings.state_url is not None and settings.state_url.startswith("redis://")
    # The URL names the bundled Redis's Service and carries its password.
    assert "@mcp-router-redis:6379/" in values["state-url"]
    assert f":{values['redis-password']}@" in values["state-url"]
    redis_env = env_of(
        one(rendered, "StatefulSet", "mcp-router-redis")["spec"]["template"]["spec"]["containers"][
            0
        ]
    )
    assert redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mcp-router-secrets",
        "key": "redis-password",
    }


def test_each_replica_is_named_after_its_pod(rendered: list[dict[str, Any]]) -> None:
    env = env_of(router_container(rendered))
    assert env["MCP_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_termination_leaves_time_for_the_drain(rendered: list[dict[str, Any]]) -> None:
    pod = one(rendered, "Deployment", "mcp-router")["spec"]["template"]["spec"]
    container = router_container(rendered)
    grace = float(env_of(container)["MCP_SHUTDOWN_GRACE_SECONDS"]["value"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace


def test_the_pdb_and_hpa_target_the_deployment(rendered: list[dict[str, Any]]) -> None:
    pdb = one(rendered, "PodDisruptionBudget", "mcp-router")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"] == LABELS
    hpa = one(rendered, "HorizontalPodAutoscaler", "mcp-router")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mcp-router",
    }
    assert hpa["spec"]["minReplicas"] >= 3
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_the_configmap_is_mounted_where_the_image_reads_its_config(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    pod = one(rendered, "Deployment", "mcp-router")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in router_container(rendered)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = mounts["config"]
    assert config_mount["mountPath"] == "/app/config"
    assert "subPath" not in config_mount  # a subPath mount never sees ConfigMap updates
    containerfile = (ROOT / "Containerfile").read_text()
    assert "MCP_BACKENDS_CONFIG=/app/config/backends.yaml" in containerfile
    configmap = one(rendered, "ConfigMap", volumes["config"]["configMap"]["name"])
    path = tmp_path / "backends.yaml"
    path.write_text(configmap["data"]["backends.yaml"])
    config = load_config(path)  # what `mcp-router check` loads first (exit 2 on a problem)
    assert [b.name for b in config.backends] == ["demo"]
    # Every writable path is a volume (the root filesystem is read-only).
    pins = env_of(router_container(rendered))["MCP_PINS_FILE"]["value"]
    assert any(pins.startswith(m["mountPath"] + "/") for m in mounts.values())
    assert mounts["tmp"]["mountPath"] == "/tmp"


def test_the_demo_backend_command_ships_with_the_image() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "mcp-server" in scripts


# ------------------------------------------------------------------------------ compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_haproxy_redis_and_three_replicas_of_the_containerfile(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    routers = sorted(name for name in services if name.startswith("router-"))
    assert routers == ["router-1", "router-2", "router-3"]
    ids = set()
    for name in routers:
        service = services[name]
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == ROOT / "Containerfile"
        env = service["environment"]
        assert (
            env["MCP_STATE_URL"].startswith("redis://") and "@redis:6379/" in env["MCP_STATE_URL"]
        )
        assert env["MCP_STATE_KEY"] and env["MCP_AUTH_TOKENS"]
        ids.add(env["MCP_REPLICA_ID"])
        assert any(v.split(":")[1] == "/app/config" for v in service["volumes"])
        assert "ports" not in service  # reached through HAProxy only
    assert ids == set(routers)
    assert services["redis"]["image"].startswith("docker.io/library/redis:7")
    balancer = services["haproxy"]
    assert any(v.split(":")[0] == "./haproxy.cfg" for v in balancer["volumes"])
    assert set(balancer["depends_on"]) == set(routers)


def test_haproxy_balances_over_the_compose_replicas(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):8000\b", text, re.M)
    assert [(n, host) for n, host in servers] == [
        (r, r) for r in ("router-1", "router-2", "router-3")
    ]
    assert re.search(r"^\s*balance roundrobin$", text, re.M)
    assert "uri /ready" in text  # health checks follow readiness (draining, Redis down)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_the_config_offline() -> None:
    out = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Configuration file is valid" in out.stdout + out.stderr
    assert "WARNING" not in out.stdout + out.stderr


def test_the_compose_config_loads() -> None:
    config = load_config(DEPLOY / "config" / "backends.yaml")
    assert [b.name for b in config.backends] == ["demo"]
