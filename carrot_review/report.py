"""Render an Outcome as a Markdown summary (stdout, review body) or a JSON document."""

from __future__ import annotations

import html
import json
import re

from carrot_review.findings import Finding
from carrot_review.review import Outcome

TITLE = "carrot-review"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _fenced(text: str) -> str:
    """A code block whose fence is longer than any backtick run inside `text`."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{fence}\n{text}\n{fence}"


def finding_line(f: Finding) -> str:
    rule = f" `{f.rule}`" if f.rule else ""
    line = (f"- `{f.file}:{f.line}` **{f.severity}**{rule} {_oneline(f.message)}"
            + ("" if f.source == "model" else f" ({f.source})"))
    if f.suggestion:
        line += "\n  - suggestion: " + _oneline(f.suggestion)
    return line


def comment_body(f: Finding) -> str:
    """Body of one inline review comment."""
    who = "model" if f.source == "model" else f.source + (f" {f.rule}" if f.rule else "")
    body = f"**{f.severity}** ({who}): {f.message}"
    if f.suggestion:
        body += "\n\nSuggestion:\n" + _fenced(f.suggestion)
    return body


def markdown(o: Outcome) -> str:
    gate = "failed" if o.lint_failed else "passed, but 0 files linted" if o.nothing_linted else "passed"
    lines = [f"## {TITLE}", "",
             f"**Linters (gate): {gate}** · Model (advisory): {len(o.model_findings)} finding(s)"
             + (f" from {', '.join(o.served_by)}" if o.served_by else "")
             + (f" · build fails on model findings ≥ `{o.fail_on}`" if o.fail_on else ""), ""]
    if o.lint_results:
        lines += ["### Linters", "", "| command | files | result |", "| --- | --- | --- |"]
        for r in o.lint_results:
            status = r.note or ("ok" if not r.failed else f"exit {r.returncode}")
            mark = "❌" if r.failed else "⚠️" if r.returncode is None else "✅"
            command = r.spec.command.replace("|", "\\|")
            lines.append(f"| `{command}` | {len(r.files)} | {mark} {status} |")
        lines += [""] + [finding_line(f) for f in o.lint_findings] if o.lint_findings else []
        unparsed = [r for r in o.lint_results if r.failed and r.output and not r.findings]
        for r in unparsed:
            lines += ["", f"<details><summary>output of <code>{html.escape(r.spec.command)}</code></summary>", "",
                      _fenced(r.output[-4000:]), "</details>"]
        lines.append("")
    else:
        lines += ["No linter applies to the changed files.", ""]
    lines += ["### Model review (advisory)", ""]
    lines += [finding_line(f) for f in o.model_findings] or ["No findings."]
    notes = []
    if o.dropped_outside_diff:
        notes.append(f"{o.dropped_outside_diff} model finding(s) dropped: they point outside the diff")
    if o.invalid_items:
        notes.append(f"{o.invalid_items} model finding(s) dropped: missing or invalid fields")
    notes += [f"not reviewed by the model — {p}" for p in o.problems]
    if o.not_reviewed:
        notes.append("not reviewed by the model (request limit reached, gateway refused or not answering): " + ", ".join(o.not_reviewed))
    notes += [f"skipped `{f.path}`: {f.skipped}" for f in o.diff.files if f.skipped]
    if notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def as_json(o: Outcome) -> str:
    doc = {
        "exit_code": o.exit_code,
        "lint": {
            "failed": o.lint_failed,
            "commands": [
                {"command": r.spec.command, "language": r.spec.language, "files": r.files,
                 "returncode": r.returncode, "failed": r.failed, "note": r.note}
                for r in o.lint_results
            ],
            "findings": [f.model_dump() for f in o.lint_findings],
        },
        "model": {
            "findings": [f.model_dump() for f in o.model_findings],
            "requests": len(o.chunks),
            "served_by": o.served_by,
            "dropped_outside_diff": o.dropped_outside_diff,
            "invalid_items": o.invalid_items,
            "problems": o.problems,
            "not_reviewed": o.not_reviewed,
            "fail_on": o.fail_on,
        },
        "skipped": [{"path": f.path, "reason": f.skipped} for f in o.diff.files if f.skipped],
    }
    return json.dumps(doc, indent=2)
