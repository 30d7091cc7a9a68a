"""SARIF 2.1.0 log for code-scanning upload: one run per tool (each linter, and the model)."""

from __future__ import annotations

import json

from carrot_review.findings import Finding
from carrot_review.review import Outcome

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
MODEL_TOOL = "carrot-review"


def _result(f: Finding) -> dict:
    return {
        "ruleId": f.rule or f"{f.source}/{f.severity}",
        "level": f.severity,
        "message": {"text": f.message + (f"\nSuggestion: {f.suggestion}" if f.suggestion else "")},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"},
            "region": {"startLine": f.line},
        }}],
    }


def _run(tool: str, findings: list[Finding]) -> dict:
    rules = sorted({f.rule or f"{f.source}/{f.severity}" for f in findings})
    return {
        "tool": {"driver": {"name": tool, "rules": [{"id": r} for r in rules]}},
        "results": [_result(f) for f in findings],
    }


def sarif(o: Outcome) -> str:
    by_tool: dict[str, list[Finding]] = {}
    for f in o.lint_findings:
        by_tool.setdefault(f.source, []).append(f)
    runs = [_run(tool, fs) for tool, fs in by_tool.items()]
    runs.append(_run(MODEL_TOOL, o.model_findings))
    return json.dumps({"$schema": SCHEMA, "version": "2.1.0", "runs": runs}, indent=2)
