"""The one function that records a guardrail verdict (request context + counter)."""

from __future__ import annotations

from ..context import RequestContext, Verdict
from ..metrics import GUARDRAIL_ACTIONS


def record(ctx: RequestContext | None, verdict: Verdict) -> None:
    """Append `verdict` to the request's context (rendered into x-carrot-guardrails) and count it."""
    GUARDRAIL_ACTIONS.labels(verdict.guardrail, verdict.action).inc()
    if ctx is not None:
        ctx.verdicts.append(verdict)
