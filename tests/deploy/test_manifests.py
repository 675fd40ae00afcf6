"""deploy/k8s/: every manifest is valid against the Kubernetes JSON schemas, and the manifests agree
with the gateway (config keys, ports, probes, drain timing, the image's user).

Schemas come bundled with ``kubernetes-validate`` (a dev dependency), so this runs offline.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ENV_PREFIX, load_config

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
# The oldest minor version the manifests are meant for (autoscaling/v2 and policy/v1 are GA there)
# and the newest the bundled schemas know.
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
# Files kubectl applies with `-k`; the example Secret is left out so real credentials are never
# overwritten with the placeholder.
NOT_APPLIED = {"secret.example.yaml"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _resource(kind: str) -> dict[str, Any]:
    found = [doc for path in _manifests() for doc in _documents(path) if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def _container() -> dict[str, Any]:
    (container,) = _resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _gateway_env() -> dict[str, str]:
    """The SONIC_GATEWAY_* variables the pods get: the ConfigMap and the example Secret."""
    env: dict[str, str] = {}
    env.update(_resource("ConfigMap")["data"])
    env.update(_resource("Secret")["stringData"])
    return env


def _dockerfile_env(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert match is not None, f"{name} not set in the Dockerfile"
    return match.group(1)


def test_every_manifest_is_found() -> None:
    kinds = {doc["kind"] for path in _manifests() for doc in _documents(path)}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    for doc in _documents(path):
        # strict: unknown fields (a misspelt key that kubectl would drop with a warning) fail too.
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = _documents(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    expected = sorted(p.name for p in _manifests() if p.name not in NOT_APPLIED)
    assert sorted(kustomization["resources"]) == expected


def test_gateway_env_is_accepted_by_the_gateway_config_loader() -> None:
    env = _gateway_env()
    assert all(name.startswith(ENV_PREFIX) for name in env)
    # Unknown keys and bad values raise ConfigError naming the variable.
    config = load_config(None, env)
    assert config.backend == "bedrock"
    assert config.twilio.auth_token is not None


def test_hpa_targets_live_calls_below_the_per_pod_call_limit() -> None:
    hpa = _resource("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == _resource("Deployment")["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "sonic_gateway_live_calls"
    target = float(metric["pods"]["target"]["averageValue"])
    limit = load_config(None, _gateway_env()).limits.max_concurrent_calls
    assert 0 < target < limit
    assert hpa["spec"]["minReplicas"] >= 2


def test_probes_use_readyz_for_readiness_and_healthz_for_liveness() -> None:
    container = _container()
    port = container["ports"][0]
    assert port["containerPort"] == int(_dockerfile_env("SONIC_GATEWAY_SERVER__PORT"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    annotations = _resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])


def test_grace_period_outlasts_the_drain_timeout() -> None:
    drain_timeout_s = load_config(None, _gateway_env()).limits.drain_timeout_s
    grace = _resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The goodbye phase (bounded at 8 s: gateway/drain.py) and the shutdown come after it.
    assert grace >= drain_timeout_s + 15


def test_prestop_signals_the_gateway_and_waits_for_it_to_exit() -> None:
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    script = command[2]
    # SIGTERM to PID 1 (the gateway: the image's ENTRYPOINT is in exec form), then a wait for it to
    # be gone; returning early would let kubelet's own SIGTERM cut the drain short.
    assert shlex.split(script.split(";")[0]) == ["kill", "-TERM", "1"]
    assert "while kill -0 1" in script


def test_pod_runs_as_the_images_non_root_user() -> None:
    pod = _resource("Deployment")["spec"]["template"]["spec"]
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert user is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(user.group(1)) != 0
    assert pod["serviceAccountName"] == _resource("ServiceAccount")["metadata"]["name"]
    container = _container()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # One core per process: the gateway runs one event loop.
    assert container["resources"]["requests"]["cpu"] == "1"


def test_no_static_aws_keys_anywhere() -> None:
    for path in sorted(K8S.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert "AWS_SECRET_ACCESS_KEY" not in text
        assert "AWS_ACCESS_KEY_ID" not in text
