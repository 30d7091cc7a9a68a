"""Recording guardrail verdicts (request context + counter)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from ..context import RequestContext, Verdict
from ..metrics import GUARDRAIL_ACTIONS
from .answers import UNRESTORED


def record(ctx: RequestContext | None, verdict: Verdict) -> None:
    """Append `verdict` to the request's context (rendered into x-carrot-guardrails) and count it."""
    GUARDRAIL_ACTIONS.labels(verdict.guardrail, verdict.action).inc()
    if ctx is not None:
        ctx.verdicts.append(verdict)


def record_output(ctx: RequestContext | None, applied: Counter, restored: int, secret_ids: Collection[str]) -> None:
    """The output guardrail's verdicts: findings by kind (secrets/commands) and action, tool calls ended at a
    placeholder that is not restored (`egress:unrestored`), and restores."""
    by_kind: dict[tuple[str, str], list[str]] = {}
    for (rule_id, action), n in applied.items():
        key = ("egress", "unrestored") if rule_id == UNRESTORED else (
            "secrets" if rule_id in secret_ids else "commands", action)
        by_kind.setdefault(key, []).extend([rule_id] * n)
    for (kind, action), ids in sorted(by_kind.items()):
        listed = ", ".join(f"{r} x{c}" if c > 1 else r for r, c in Counter(ids).items())
        record(ctx, Verdict(kind, action, f"{kind}: {listed}", tuple(dict.fromkeys(ids))))
    if restored:
        record(ctx, Verdict("pii", "restore", "placeholders restored for the client"))
    if not applied:
        record(ctx, Verdict("output", "pass", "no secret or dangerous command found"))
