"""`bench/load_parts.py` compares the gateway as shipped with each of its guardrails left out in turn."""

from __future__ import annotations

import yaml

from bench.load_parts import FULL, NONE, variant_configs
from carrot_hooks.serve import ROOT


def test_each_shipped_guardrail_is_left_out_once_and_nothing_else_changes(tmp_path):
    shipped = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    names = [g["guardrail_name"] for g in shipped["guardrails"]]
    assert len(names) >= 3
    variants = {label: yaml.safe_load(path.read_text()) for label, path in variant_configs(tmp_path).items()}
    assert list(variants) == [FULL, *(f"gateway without {n}" for n in names), NONE]
    for label, cfg in variants.items():
        kept = [g["guardrail_name"] for g in cfg["guardrails"]]
        expected = names if label == FULL else [] if label == NONE else [n for n in names if not label.endswith(n)]
        assert kept == expected, label
        assert {k: v for k, v in cfg.items() if k != "guardrails"} == \
            {k: v for k, v in shipped.items() if k != "guardrails"}, label
