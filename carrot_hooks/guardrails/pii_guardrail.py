"""`carrot-pii` (pre_call): code-aware PII redaction of what the caller sent, escalation, fail closed."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter
from collections.abc import Collection

from litellm.types.guardrails import GuardrailEventHooks

from ..context import Verdict, get_context, risk_of
from ..errors import GatewayError, no_fim_deployment
from ..messages import (
    CALLER_ROLES,
    PROMPT_CALLS,
    map_request_texts,
    map_structured,
    text_copy,
)
from ..metrics import timed_stage
from ..upstream import tools_capable
from .base import CarrotGuardrail
from .engines import in_thread, shared_engines
from .metrics import record
from .pii import Vault
from .pii_process import RemoteRedactor
from .vaults import PII, store, vault

log = logging.getLogger("carrot.guardrails")


class PiiGuardrail(CarrotGuardrail):
    """Code-aware PII redaction of everything sent upstream (pre_call)."""

    def __init__(self, **kwargs):
        super().__init__(supported_event_hooks=[GuardrailEventHooks.pre_call], **kwargs)
        self.engines = shared_engines()
        self.engines.pii()  # start the PII processes and load their pipelines now, not on the first request

    @timed_stage("guardrail_pii")
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """Replace PII with `<LABEL_n>` placeholders; escalate or fail closed per the risk level."""
        if call_type not in PROMPT_CALLS:
            return data
        ctx = get_context(data)
        level = risk_of(ctx, "carrot-pii")
        policy = self.engines.watched.get()
        risk = policy.risk[level]
        placeholders = copy.deepcopy(vault(data, PII))  # stored only on success: a timed-out thread may go on
        entities: Counter[str] = Counter()
        try:
            # after an edit of `pii:` the PII processes rebuild (in a thread, not timed); else no thread hop
            redactor = self.engines.pii_if_built() or await asyncio.to_thread(self.engines.pii)
            redacted = await in_thread(policy.pii.timeout_ms / 1000, _redact_copy, redactor, data, placeholders,
                                       entities, ctx.authored if ctx else (), ctx.extra_fields if ctx else ())
        except Exception as e:  # noqa: BLE001 - any engine failure: the risk level decides open or closed
            reason = "timed out" if isinstance(e, TimeoutError) else type(e).__name__
            log.error("PII engine failed (%s) for a %s-risk request", reason, level)
            if risk.pii_engine_failure == "closed":
                record(ctx, Verdict("pii", "block", f"PII engine {reason}; failing closed", ("pii-engine-failure",)))
                raise GatewayError(
                    503, f"PII redaction engine unavailable ({reason}); {level}-risk requests fail closed "
                    "(rule pii-engine-failure)", code="guardrail_unavailable",
                ) from None
            record(ctx, Verdict("pii", "flag", f"PII engine {reason}; low risk passes unredacted", ("pii-engine-failure",)))
            return data
        if not entities:
            record(ctx, Verdict("pii", "pass", "no PII found"))
            return data
        data.update(redacted)
        store(data, PII, placeholders)
        summary = ", ".join(f"{e} x{n}" for e, n in entities.items())
        record(ctx, Verdict("pii", "redact", f"replaced with placeholders: {summary}", tuple(sorted(entities))))
        if risk.escalate_on_pii == "review":
            record(ctx, Verdict("pii", "escalate", "PII in this risk level needs human review", ("pii-escalation",)))
            raise GatewayError(
                403, f"Request contains PII ({summary}) at risk level {level}: it needs human review "
                "(rule pii-escalation)", code="guardrail_review",
            )
        if risk.escalate_on_pii and risk.escalate_on_pii.startswith("reroute:"):
            alias = risk.escalate_on_pii.split(":", 1)[1]
            if ctx is None:
                data["model"] = alias
            elif not ctx.reroute(data, alias, tools_capable(alias)):
                record(ctx, Verdict("pii", "block", f"PII at this risk level goes to {alias}, which has no "
                                    "fill-in-the-middle deployment", ("pii-escalation",)))
                raise no_fim_deployment(f"Request contains PII ({summary}) at risk level {level}: it goes to "
                                        f"{alias} (rule pii-escalation)")
            record(ctx, Verdict("pii", "escalate", f"PII at this risk level rerouted to {alias}", ("pii-escalation",)))
        return data


def _redact_copy(redactor: RemoteRedactor, data: dict, vault: Vault, entities: Counter[str],
                 authored: Collection[str], extra: tuple[str, ...] = ()) -> dict:
    """Redacted copies of the request's text fields and `extra` top-level fields (applied only when the whole
    analysis succeeded).
    The client's own system prompt is left as written (`noreply@continue.dev` is no one's PII): egress
    redacts every role for an external deployment."""
    redacted = text_copy(data)

    def walk(fn) -> dict:
        map_request_texts(redacted, fn, skip=authored, roles=CALLER_ROLES)
        # top-level keys LiteLLM hands the provider as they are (`fields.forwarded_extras`): caller text too
        return {k: map_structured(data[k], fn) for k in extra if k in data}

    def one(text: str) -> str:
        out, hits = redactor.redact(text, vault)
        entities.update(h.entity for h in hits)
        return out

    redactor.prefetch(walk)
    extras = walk(one)  # before `redacted` is read: the walk replaces its top-level texts (prompt, suffix)
    return {**redacted, **extras}
