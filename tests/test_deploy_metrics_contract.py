"""deploy/metrics.yaml (what the dashboard queries) matches what the gateway's code registers."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

import carrot_hooks.guardrails.metrics as guardrail_metrics
import carrot_hooks.metrics as gateway_metrics

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = yaml.safe_load((ROOT / "deploy/metrics.yaml").read_text())


def registered() -> dict[str, MetricWrapperBase]:
    found = {}
    for module in (gateway_metrics, guardrail_metrics):
        for obj in vars(module).values():
            if isinstance(obj, MetricWrapperBase):
                (family,) = obj.describe()
                name = family.name + ("_total" if family.type == "counter" else "")
                found[name] = obj
    return found


def test_code_registers_exactly_the_contract_metrics_with_its_types_and_labels():
    code = registered()
    assert set(code) == set(CONTRACT["metrics"])
    for name, spec in CONTRACT["metrics"].items():
        (family,) = code[name].describe()
        assert family.type == spec["type"], name
        assert list(code[name]._labelnames) == spec["labels"], name


def test_request_histogram_has_a_bucket_boundary_at_every_slo_bound():
    bounds = set(registered()["carrot_request_duration_seconds"]._upper_bounds)
    for slo in CONTRACT["slos"]:
        assert float(slo["p95_seconds"]) in bounds, slo["name"]
