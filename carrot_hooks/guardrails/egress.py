"""Egress: what leaves for an upstream depends on where it runs.

Each deployment in litellm_config.yaml says `model_info.carrot_egress: internal|external` (a
deployment that says neither is treated as external). `egress:` in policy/guardrails.yaml says
what each kind receives. This runs per deployment attempt (LiteLLM's pre-call deployment hook),
so a request that falls back from an internal to an external deployment is redacted for the
external one, in every string the upstream receives (`messages.EGRESS_FIELDS`, `EGRESS_FREE_FIELDS`):
all message roles, tool-call arguments and inputs, prompt and suffix, tool definitions and output schemas,
stop sequences, user ids, the client's metadata and keys a client adds (inside messages and parts, and at
the top of a chat or completions request, which LiteLLM hands the provider as they are); only protocol values in messages,
items, parts and tool definitions (`messages.PROTOCOL_KEYS`: ids, roles, types, the names a model calls,
schema structure, signed blobs) stay as they are.
Placeholders come back in the answer where the request's risk level says (`restore_secrets`,
`restore_pii`), through the request's vaults (`vaults.py`); a tool call holding one that is not restored
ends the turn (`vaults.withheld`).
"""

from __future__ import annotations

import copy
from collections import Counter

from ..context import Verdict, get_context
from ..errors import GatewayError
from ..messages import PROMPT_CALLS, map_egress, non_text_parts
from .engines import Engines
from .metrics import record
from .vaults import PII, SECRETS, store, vault


def deployment_kind(kwargs: dict) -> str:
    """`internal` or `external` for the deployment LiteLLM is about to call (unknown → external)."""
    info = kwargs.get("model_info") or {}
    return "internal" if info.get("carrot_egress") == "internal" else "external"


def _settings(kwargs: dict, engines: Engines):
    """The deployment's kind and what the egress policy says that kind receives."""
    kind = deployment_kind(kwargs)
    return kind, getattr(engines.detectors().policy.egress, kind)


def needed(kwargs: dict, engines: Engines) -> bool:
    """Whether the egress policy redacts anything for the deployment LiteLLM is about to call."""
    settings = _settings(kwargs, engines)[1]
    return settings.secrets == "redact" or settings.pii == "redact"


def protect(kwargs: dict, engines: Engines, call_type: str) -> Verdict | None:
    """Redact `kwargs` in place as the egress policy says for this deployment's kind; returns the verdict
    to record once the caller has the result (None: nothing found).

    Placeholders go into copies of the request's vaults, which replace them only when the whole
    redaction succeeded (a timed-out attempt's thread cannot touch what the answer is restored from).
    """
    kind, settings = _settings(kwargs, engines)
    ctx = get_context(kwargs)
    if call_type.split(".")[-1] not in PROMPT_CALLS:
        raise GatewayError(503, f"call type {call_type} cannot be redacted for an {kind} upstream; not sent "
                           "(rule egress-unsupported)", code="guardrail_blocked")
    opaque = non_text_parts(kwargs, ctx.authored if ctx is not None else ())
    if opaque:
        raise GatewayError(400, f"{', '.join(opaque)}: parts without text cannot be checked for secrets or PII and "
                           f"this request is routed to an {kind} upstream (rule egress-unsupported)",
                           param=opaque[0].split(" ")[0], code="guardrail_blocked")
    secret_scan = engines.detectors().output.secrets.scan
    redactor = engines.pii() if settings.pii == "redact" else None
    secrets, pii = copy.deepcopy(vault(kwargs, SECRETS)), copy.deepcopy(vault(kwargs, PII))
    found: Counter[str] = Counter()

    def one(text: str) -> str:
        if settings.secrets == "redact":
            for f in sorted(secret_scan(text), key=lambda f: f.start, reverse=True):
                text = text[:f.start] + secrets.placeholder("SECRET", text[f.start:f.end]) + text[f.end:]
                found["SECRET"] += 1
        if redactor is not None:
            text, hits = redactor.redact(text, pii)
            found.update(h.entity for h in hits)
        return text

    extra = ctx.extra_fields if ctx is not None else ()
    if redactor is not None:
        redactor.prefetch(lambda fn: map_egress(kwargs, fn, extra))
    kwargs.update(map_egress(kwargs, one, extra))
    store(kwargs, SECRETS, secrets)
    store(kwargs, PII, pii)
    if not found:
        return None
    listed = ", ".join(f"{e} x{n}" for e, n in sorted(found.items()))
    return Verdict("egress", "redact", f"for an external upstream: {listed}", tuple(sorted(found)))


def refused(ctx, why: str) -> None:
    """Record that the request was not sent to the upstream (`why`: the rule and its reason)."""
    record(ctx, Verdict("egress", "block", why))
