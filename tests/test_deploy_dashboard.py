"""Grafana dashboard, its provisioning and the Prometheus scrape config, against deploy/metrics.yaml.

Every panel query is parsed with a real PromQL parser; every series it selects and every
label it filters or groups by must be in the metric contract the gateway registers.
"""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path

import promql_parser as promql
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/carrot.json").read_text())
CONTRACT = yaml.safe_load((ROOT / "deploy/metrics.yaml").read_text())
METRICS = CONTRACT["metrics"]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
LITELLM = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
# Grafana's own variables, replaced by what Grafana would send before the query reaches Prometheus
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h", "$task_type": ".*"}


def panels() -> list[dict]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana variables substituted) for every panel target."""
    out = []
    for p in panels():
        for t in p["targets"]:
            expr = t["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((p["title"], expr))
    return out


def series_of(name: str) -> tuple[str, set[str]]:
    """Contract metric and allowed labels for a selected series name (histograms add le on _bucket)."""
    if name in METRICS:
        return name, set(METRICS[name]["labels"])
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if name.endswith(suffix) and METRICS.get(base, {}).get("type") == "histogram":
            return base, set(METRICS[base]["labels"]) | ({"le"} if suffix == "_bucket" else set())
    raise AssertionError(f"{name} is not a series of any metric in deploy/metrics.yaml")


def nodes(expr) -> list:
    found = []
    promql.walk(expr, found.append)
    return found


def test_contract_names_follow_prometheus_conventions():
    for name, spec in METRICS.items():
        assert name.startswith("carrot_"), name
        if spec["type"] == "counter":
            assert name.endswith("_total"), name
        elif spec["type"] == "gauge":
            assert not name.endswith(("_total", "_bucket", "_count", "_sum")), name
        else:
            assert spec["type"] == "histogram" and name.endswith("_seconds"), name
        assert "user" not in " ".join(spec["labels"]) and "prompt" not in " ".join(spec["labels"]), name


@pytest.mark.parametrize(("title", "expr"), queries())
def test_every_query_parses_and_uses_only_contract_series_and_labels(title, expr):
    tree = promql.parse(expr)
    selected = [n for n in nodes(tree) if isinstance(n, promql.VectorSelector)]
    assert selected, f"{title}: selects no series"
    allowed_group = set()
    for sel in selected:
        _, labels = series_of(sel.name)
        allowed_group |= labels
        for m in sel.matchers.matchers:
            assert m.name in labels, f"{title}: {sel.name} has no label {m.name}"
    for agg in (n for n in nodes(tree) if isinstance(n, promql.AggregateExpr) and n.modifier):
        assert set(agg.modifier.labels) <= allowed_group, f"{title}: groups by {agg.modifier.labels}"


def test_dashboard_shows_every_metric_of_the_contract():
    used = {series_of(sel.name)[0] for _, e in queries() for sel in nodes(promql.parse(e))
            if isinstance(sel, promql.VectorSelector)}
    assert used == set(METRICS)


def test_latency_panels_draw_each_slo_as_a_threshold_line_on_the_right_models():
    names = {m["model_name"] for m in LITELLM["model_list"]}
    families = {"DeepSeek Coder 6.7B": "ds-coder-6.7b", "DeepSeek Coder V2 16B": "ds-coder-v2"}
    for slo in CONTRACT["slos"]:
        regex = re.compile(slo["model_regex"])
        matched = {n for n in names if regex.fullmatch(n)}
        # every alias of that model size (chat, FIM, pins) and nothing else (not the 236B vLLM one)
        family = {n for n in names if n.startswith(families[slo["name"]]) and "vllm" not in n}
        assert matched == family, slo
        promql_regex = slo["model_regex"].replace("\\", "\\\\")
        panel = next(p for p in panels() if p["type"] == "timeseries"
                     and f'model=~"{promql_regex}"' in p["targets"][0]["expr"])
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["value"] == slo["p95_seconds"], panel["title"]
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"].startswith("line")
        assert panel["fieldConfig"]["defaults"]["unit"] == "s"
        assert any("histogram_quantile(0.95" in t["expr"] for t in panel["targets"]), panel["title"]
        # the "within SLO" share reads the bucket at the bound: it must be an exact boundary
        share = next(p for p in panels() if p["type"] == "stat"
                     and f'model=~"{promql_regex}"' in p["targets"][0]["expr"]
                     and f'le="{float(slo["p95_seconds"])}"' in p["targets"][0]["expr"])
        assert share["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_panels_do_not_overlap_and_ids_are_unique():
    boxes = [p["gridPos"] for p in DASHBOARD["panels"]]
    for a, b in combinations(boxes, 2):
        apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                 or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        assert apart, (a, b)
    assert all(box["x"] + box["w"] <= 24 for box in boxes)
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_provisioning_points_grafana_at_the_dashboard_and_prometheus():
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    used_uids = {t["datasource"]["uid"] for p in panels() for t in p["targets"]}
    assert used_uids == {source["uid"]}
    assert source["url"] == f"http://prometheus:{COMPOSE['services']['prometheus']['ports'][0].split(':')[-1]}"

    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/carrot.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in COMPOSE["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == prov["providers"][0]["options"]["path"]


def test_prometheus_scrapes_the_proxy_metrics_path_by_service_name():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "carrot-gateway")
    assert job["metrics_path"] == "/metrics" and "authorization" not in job
    host, port = job["static_configs"][0]["targets"][0].split(":")
    assert host in COMPOSE["services"] and COMPOSE["services"][host]["ports"][0].endswith(f":{port}")
    mounts = dict(v.split(":")[:2] for v in COMPOSE["services"]["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def test_proxy_config_serves_metrics_to_the_unauthenticated_scraper():
    settings = LITELLM["litellm_settings"]
    assert settings.get("require_auth_for_metrics_endpoint") is False
    assert "prometheus" in settings.get("callbacks", []) + settings.get("success_callback", [])
