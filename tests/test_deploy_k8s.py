"""deploy/k8s without kubectl: Kubernetes 1.30 and 1.37 schemas (kubernetes-validate) plus cross-references."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml

from tests.deploy_support import image_env

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCS = {
    path.name: [d for d in yaml.safe_load_all(path.read_text()) if d]
    for path in sorted(K8S.glob("*.yaml"))
    if path.name != "kustomization.yaml"
}
ALL = [d for docs in DOCS.values() for d in docs]
LITELLM_CONFIG_TEXT = (ROOT / "litellm_config.yaml").read_text()


def one(kind: str, name: str) -> dict:
    (found,) = [d for d in ALL if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


DEPLOYMENT = one("Deployment", "carrot-gateway")
POD = DEPLOYMENT["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]
ENV = {e["name"]: e for e in CONTAINER["env"]}


def _generator():
    spec = importlib.util.spec_from_file_location("gen_k8s_config", ROOT / "scripts/gen_k8s_config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])  # oldest supported (preStop sleep), newest
@pytest.mark.parametrize("doc", ALL, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_against_the_kubernetes_schema(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_example():
    assert set(KUSTOMIZATION["resources"]) == set(DOCS) - {"secret.example.yaml"}


def test_selectors_match_the_pod_labels_everywhere():
    labels = POD["metadata"]["labels"]
    selected = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert selected.items() <= labels.items()
    service = one("Service", "carrot-gateway")
    assert service["spec"]["selector"].items() <= labels.items()
    assert one("PodDisruptionBudget", "carrot-gateway")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = one("HorizontalPodAutoscaler", "carrot-gateway")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])


def test_service_and_probes_use_the_container_port_and_litellm_health_paths():
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert one("Service", "carrot-gateway")["spec"]["ports"][0]["targetPort"] in ports
    assert CONTAINER["readinessProbe"]["httpGet"] == {"path": "/health/readiness", "port": "http"}
    assert CONTAINER["livenessProbe"]["httpGet"] == {"path": "/health/liveliness", "port": "http"}
    assert CONTAINER["startupProbe"]["httpGet"]["path"] == "/health/liveliness"
    assert ENV["PORT"]["value"] == str(ports["http"])


def test_hpa_can_compute_cpu_utilisation_and_keeps_two_replicas():
    hpa = one("HorizontalPodAutoscaler", "carrot-gateway")["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert "cpu" in CONTAINER["resources"]["requests"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]


def test_every_referenced_configmap_and_secret_key_exists():
    configmaps = {d["metadata"]["name"]: d["data"] for d in ALL if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in ALL if d["kind"] == "Secret"}
    for name, e in ENV.items():
        ref = e.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            assert r["key"] in configmaps[r["name"]], f"{name}: ConfigMap {r['name']} has no {r['key']}"
        elif "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            assert r["key"] in secrets[r["name"]], f"{name}: Secret {r['name']} has no {r['key']}"
    for vol in POD["spec"]["volumes"]:
        data = configmaps[vol["configMap"]["name"]]
        for item in vol["configMap"].get("items", []):
            assert item["key"] in data, f"volume {vol['name']}: no key {item['key']}"
    # the file LITELLM_CONFIG names is a key of the ConfigMap mounted at its folder
    config = PurePosixPath(ENV["LITELLM_CONFIG"]["value"])
    mounts = {m["mountPath"]: m["name"] for m in CONTAINER["volumeMounts"]}
    assert str(config.parent) in mounts, f"LITELLM_CONFIG={config}: nothing is mounted at {config.parent}"
    cm = next(v["configMap"] for v in POD["spec"]["volumes"] if v["name"] == mounts[str(config.parent)])
    files = {i["path"]: i["key"] for i in cm["items"]} if "items" in cm else {k: k for k in configmaps[cm["name"]]}
    assert files.get(config.name) in configmaps[cm["name"]], f"LITELLM_CONFIG={config}: not in ConfigMap {cm['name']}"


def test_container_gets_every_variable_the_config_and_hooks_read():
    from carrot_hooks.serve import DEFAULTS

    needed = set(re.findall(r"os\.environ/([A-Z_][A-Z0-9_]*)", LITELLM_CONFIG_TEXT))
    needed |= set(DEFAULTS) | {"REDIS_URL", "PGVECTOR_URL", "DATABASE_URL"}
    needed -= set(image_env())
    assert needed <= set(ENV), f"Deployment env lacks {sorted(needed - set(ENV))}"
    for secret in ("LITELLM_MASTER_KEY", "REDIS_URL", "PGVECTOR_URL", "DATABASE_URL", "ALT_API_KEY"):
        assert "secretKeyRef" in ENV[secret]["valueFrom"], f"{secret} must come from a Secret"


def test_mounts_put_config_policy_and_prompts_where_the_env_says():
    mounts = {m["name"]: m["mountPath"] for m in CONTAINER["volumeMounts"]}
    volumes = {v["name"]: v["configMap"]["name"] for v in POD["spec"]["volumes"]}
    where = {volumes[name]: path for name, path in mounts.items()}
    assert where["carrot-policy"] == ENV["CARROT_POLICY_DIR"]["value"]
    assert where["carrot-prompts"] == ENV["CARROT_PROMPTS_DIR"]["value"]
    assert ENV["LITELLM_CONFIG"]["value"] == where["carrot-litellm-config"] + "/litellm_config.yaml"
    # folders, not subPath files: kubelet refreshes them, so the hot reload sees ConfigMap edits
    assert not any("subPath" in m for m in CONTAINER["volumeMounts"])


def test_configmaps_hold_exactly_the_current_repo_files():
    gen = _generator()
    expected = {cm["metadata"]["name"]: cm["data"] for cm in gen.configmaps(ROOT)}
    committed = {d["metadata"]["name"]: d["data"] for d in DOCS["config.yaml"]}
    for name, data in expected.items():
        assert committed[name].keys() == data.keys(), (
            f"{name} does not cover the repo files: run python scripts/gen_k8s_config.py")
        assert committed[name] == data, f"{name} is stale: run python scripts/gen_k8s_config.py"
    assert expected["carrot-policy"].keys() == {p.name for p in (ROOT / "policy").iterdir() if p.is_file()}


def test_every_prompt_file_is_mounted_under_its_own_name():
    items = next(v for v in POD["spec"]["volumes"] if v["name"] == "prompts")["configMap"]["items"]
    assert {i["path"] for i in items} == {p.name for p in (ROOT / "prompts").iterdir() if p.is_file()}
    text = (K8S / "deployment.yaml").read_text()
    assert _generator().render_deployment(text, ROOT) == text, "run python scripts/gen_k8s_config.py"


def test_configmap_keys_are_valid_and_fit_the_size_limit():
    for cm in (d for d in ALL if d["kind"] == "ConfigMap"):
        for key in cm["data"]:
            assert re.fullmatch(r"[-._a-zA-Z0-9]+", key), f"{cm['metadata']['name']}: bad key {key}"
        size = sum(len(k) + len(v.encode()) for k, v in cm["data"].items())
        assert size < 1024 * 1024, f"{cm['metadata']['name']} is {size} bytes (limit 1 MiB)"


def test_image_and_user_agree_with_the_dockerfile_and_compose():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert CONTAINER["image"].split(":")[0] == compose["services"]["proxy"]["image"].split(":")[0]
    # the tag is the project's version: a new image (another Python, say) gets a new tag, which nodes pull
    assert CONTAINER["image"].split(":")[1] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"--uid {POD['spec']['securityContext']['runAsUser']}" in (ROOT / "Dockerfile").read_text()
    assert "LITELLM_CONFIG" in (ROOT / "scripts/docker-entrypoint.sh").read_text()


def test_shared_state_points_at_the_external_services():
    secret = one("Secret", "carrot-secrets")["stringData"]
    external = {d["metadata"]["name"] for d in ALL if d["kind"] == "Service" and d["spec"]["type"] == "ExternalName"}
    for key in ("REDIS_URL", "PGVECTOR_URL", "DATABASE_URL"):
        host = re.match(r"\w+://(?:[^@]*@)?([^:/]+)", secret[key])[1]
        assert host in external, f"{key} points at {host}, not an ExternalName service"
