"""The guardrail metric and the one function that records a verdict (context + counter)."""

from __future__ import annotations

from prometheus_client import Counter

from ..context import RequestContext, Verdict

GUARDRAIL_ACTIONS = Counter(
    "carrot_guardrail_actions_total",
    "Guardrail decisions by guardrail and action (pass, flag, redact, block, restore, escalate).",
    ["guardrail", "action"],
)


def record(ctx: RequestContext | None, verdict: Verdict) -> None:
    """Append `verdict` to the request's context (rendered into x-carrot-guardrails) and count it."""
    GUARDRAIL_ACTIONS.labels(verdict.guardrail, verdict.action).inc()
    if ctx is not None:
        ctx.verdicts.append(verdict)
