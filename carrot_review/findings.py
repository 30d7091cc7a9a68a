"""Findings: the structured unit of review output, parsing of model replies, diff validation, dedupe."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Severity = Literal["error", "warning", "note"]
SEVERITY_RANK = {"note": 0, "warning": 1, "error": 2}
_SEVERITY_ALIASES = {
    "critical": "error", "high": "error", "blocker": "error", "major": "error",
    "medium": "warning", "warn": "warning", "minor": "warning",
    "low": "note", "info": "note", "information": "note", "nit": "note", "suggestion": "note",
}


class Finding(BaseModel):
    """One review finding on the new side of the diff; `source` is "model" or the linter's name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    file: str = Field(min_length=1)
    line: int = Field(ge=1)
    severity: Severity = "warning"
    message: str = Field(min_length=1, max_length=4000)
    suggestion: str | None = None
    source: str = "model"
    rule: str | None = None

    @field_validator("line", mode="before")
    @classmethod
    def _no_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # pydantic would read `true` as line 1
            raise ValueError("line must be a number")  # noqa: TRY004 - pydantic reports only ValueError
        return value

    @field_validator("severity", mode="before")
    @classmethod
    def _normalise_severity(cls, value: object) -> object:
        if value is None:
            return "warning"
        if isinstance(value, str):
            v = value.strip().lower()
            return _SEVERITY_ALIASES.get(v, v)
        return value

    @field_validator("file", mode="before")
    @classmethod
    def _strip_prefix(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value[2:] if value.startswith(("a/", "b/", "./")) else value
        return value

    @field_validator("message", "suggestion", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    def key(self) -> tuple[str, int, str]:
        """Identity for de-duplication: same place, same message (case and spacing ignored)."""
        return (self.file, self.line, " ".join(self.message.lower().split()))


class MalformedOutput(ValueError):
    """The model reply is not the JSON findings document the ci_review pack asks for."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_model_reply(text: str | None) -> tuple[list[Finding], int]:
    """Parse a reply into (valid findings, count of invalid items); MalformedOutput if no document."""
    if not text or not text.strip():
        raise MalformedOutput("empty reply")
    doc = _load_json(text)
    items = doc.get("findings") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise MalformedOutput('no "findings" list in the reply')
    findings, invalid = [], 0
    for item in items:
        try:
            findings.append(Finding.model_validate({**item, "source": "model"}))
        except (ValidationError, TypeError):
            invalid += 1
    return findings, invalid


def _load_json(text: str) -> object:
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise MalformedOutput("reply is not JSON")


def in_diff(findings: list[Finding], commentable: Mapping[str, frozenset[int]]) -> tuple[list[Finding], int]:
    """Keep findings whose file and new-side line are in the diff; return (kept, dropped count)."""
    kept = [f for f in findings if f.line in commentable.get(f.file, ())]
    return kept, len(findings) - len(kept)


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """First occurrence wins; order is kept."""
    seen: set[tuple[str, int, str]] = set()
    out = []
    for f in findings:
        if f.key() not in seen:
            seen.add(f.key())
            out.append(f)
    return out
