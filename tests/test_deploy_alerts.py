"""deploy/prometheus/rules: promtool checks them and runs their unit tests; compose and Kubernetes load them;
their latency bounds are the SLOs of deploy/metrics.yaml and they read only contract series."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import promql_parser as promql
import yaml

from tests.services import ServiceError

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
CONTRACT = yaml.safe_load((ROOT / "deploy/metrics.yaml").read_text())


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    found = shutil.which("promtool")
    if not found:
        raise ServiceError("promtool not found: run scripts/setup_ops.sh (Debian package `prometheus`)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def rules() -> list[dict]:
    return [r for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rule_files():
    assert RULE_FILES
    out = promtool("check", "rules", *map(str, RULE_FILES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_of_the_rules_pass():
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    out = promtool("test", "rules", *(t.name for t in tests), cwd=PROM / "tests")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_unit_test_and_a_runbook_entry():
    tested = {c["alertname"] for t in (PROM / "tests").glob("*.yml")
              for case in yaml.safe_load(t.read_text())["tests"] for c in case.get("alert_rule_test", [])}
    readme = (ROOT / "README.md").read_text()
    for rule in rules():
        if "alert" in rule:
            assert rule["alert"] in tested, f"{rule['alert']} has no promtool unit test"
            assert rule["alert"] in readme, f"{rule['alert']} is not explained in the README"


def test_latency_alerts_use_the_contract_slos():
    alerts = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    for slo in CONTRACT["slos"]:
        regex = slo["model_regex"].replace("\\", "\\\\")
        (expr,) = [e for e in alerts.values() if f'model=~"{regex}"' in e]
        assert float(re.search(r">\s*([0-9.]+)\s*$", expr)[1]) == float(slo["p95_seconds"]), slo["name"]


def test_rules_read_only_contract_series_or_recorded_ones():
    recorded = {r["record"] for r in rules() if "record" in r}
    known = set(CONTRACT["metrics"]) | recorded
    for rule in rules():
        found: list = []
        promql.walk(promql.parse(rule["expr"]), found.append)
        for sel in (n for n in found if isinstance(n, promql.VectorSelector)):
            base = re.sub(r"_(bucket|sum|count)$", "", sel.name) if sel.name not in known else sel.name
            assert base in known, f"{rule.get('alert') or rule.get('record')}: unknown series {sel.name}"


def test_compose_and_kubernetes_ship_the_rules():
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    config_dir = Path(mounts["./deploy/prometheus/prometheus.yml"]).parent
    for pattern in prom["rule_files"]:
        # the same relative glob finds the rules in the repo and in the container
        assert sorted(PROM.glob(pattern)) == RULE_FILES
        assert mounts["./deploy/prometheus/rules"] == str(config_dir / Path(pattern).parent)
    k8s = {d["metadata"]["name"]: d for d in yaml.safe_load_all((ROOT / "deploy/k8s/config.yaml").read_text()) if d}
    assert k8s["carrot-prometheus-rules"]["data"] == {f.name: f.read_text() for f in RULE_FILES}
