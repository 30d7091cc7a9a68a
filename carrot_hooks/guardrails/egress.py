"""Egress: what leaves for an upstream depends on where it runs.

Each deployment in litellm_config.yaml says `model_info.carrot_egress: internal|external` (a
deployment that says neither is treated as external). `egress:` in policy/guardrails.yaml says
what each kind receives. This runs per deployment attempt (LiteLLM's pre-call deployment hook),
so a request that falls back from an internal to an external deployment is redacted for the
external one, in every part: all message roles, tool-call arguments, prompt and suffix.
Placeholders come back in the answer where the request's risk level says (`restore_secrets`,
`restore_pii`), through the request's vaults (`vaults.py`).
"""

from __future__ import annotations

import copy
from collections import Counter

from ..context import Verdict, get_context
from ..messages import map_request_texts
from .engines import Engines
from .metrics import record
from .vaults import PII, SECRETS, vault


def deployment_kind(kwargs: dict) -> str:
    """`internal` or `external` for the deployment LiteLLM is about to call (unknown → external)."""
    info = kwargs.get("model_info") or {}
    return "internal" if info.get("carrot_egress") == "internal" else "external"


def protect(kwargs: dict, engines: Engines) -> dict:
    """Redact `kwargs` in place as the egress policy says for this deployment's kind; returns it."""
    kind = deployment_kind(kwargs)
    settings = getattr(engines.detectors().policy.egress, kind)
    if settings.secrets == "keep" and settings.pii == "keep":
        return kwargs
    ctx = get_context(kwargs)
    secret_scan = engines.detectors().output.secrets.scan
    redactor = engines.pii() if settings.pii == "redact" else None
    secrets, pii = vault(kwargs, SECRETS), vault(kwargs, PII)
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

    for key in ("messages", "prompt", "suffix"):  # copies: the router shares these with the request's other attempts
        if key in kwargs:
            kwargs[key] = copy.deepcopy(kwargs[key])
    map_request_texts(kwargs, one)
    if found:
        listed = ", ".join(f"{e} x{n}" for e, n in sorted(found.items()))
        record(ctx, Verdict("egress", "redact", f"for an external upstream: {listed}", tuple(sorted(found))))
    return kwargs
