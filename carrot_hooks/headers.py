"""Parse and validate the gateway's request headers (X-Task-Type, X-Risk-Level, X-Model-Alias, X-Context-Refs)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .context import RISKS, ContextRefs, Risk
from .errors import GatewayError, bad_header

# the request headers the gateway reads (lower case); each may be sent once
GATEWAY_HEADERS = ("x-task-type", "x-risk-level", "x-model-alias", "x-context-refs", "x-carrot-prompt-pack")
_REF = re.compile(r"^(?P<repo>[A-Za-z0-9._/\-]{1,200})(?:@(?P<sha>[0-9A-Za-z._/\-]{1,100}))?$")


@dataclass(frozen=True)
class GatewayHeaders:
    """The validated gateway headers of one request (None where absent)."""

    task_type: str | None
    risk: Risk | None
    pin: str | None
    context_refs: ContextRefs | None


def parse_context_refs(value: str) -> ContextRefs:
    """`repo@sha,path,path` → ContextRefs; 400 naming the header when malformed."""
    head, *paths = [p.strip() for p in value.split(",")]
    m = _REF.match(head)
    clean = tuple(p for p in paths if p)
    if not m or len(clean) > 200 or any(len(p) > 1000 or "\x00" in p for p in clean):
        raise GatewayError(
            400,
            "Invalid X-Context-Refs header: expected 'repo@sha,path,path...' (repo and sha of letters, "
            "digits, '._/-'; at most 200 paths)",
            param="X-Context-Refs",
        )
    return ContextRefs(repo=m["repo"], commit=m["sha"], paths=clean)


def parse_headers(
    headers: Mapping[str, str], task_types: Collection[str], pins: Collection[str]
) -> GatewayHeaders:
    """Validate the gateway headers against the allowed task types and known pinned aliases."""
    h = {k.lower(): v.strip() for k, v in headers.items()}
    task = h.get("x-task-type") or None
    if task is not None and task not in task_types:
        raise bad_header("X-Task-Type", task, sorted(task_types))
    risk = h.get("x-risk-level") or None
    if risk is not None and risk not in RISKS:
        raise bad_header("X-Risk-Level", risk, list(RISKS))
    pin = h.get("x-model-alias") or None
    if pin is not None and pin not in pins:
        raise GatewayError(
            400,
            f"Unknown X-Model-Alias: known pinned aliases are {', '.join(sorted(pins)) or 'none'}",
            param="X-Model-Alias",
        )
    refs = parse_context_refs(h["x-context-refs"]) if h.get("x-context-refs") else None
    return GatewayHeaders(task_type=task, risk=risk, pin=pin, context_refs=refs)  # type: ignore[arg-type]
