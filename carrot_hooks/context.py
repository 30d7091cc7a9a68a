"""The typed per-request context every gateway stage reads and writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Risk = Literal["low", "med", "high"]
RISKS: tuple[Risk, ...] = ("low", "med", "high")
Action = Literal["pass", "flag", "redact", "block", "restore", "escalate"]


@dataclass(frozen=True)
class ContextRefs:
    """`X-Context-Refs: repo@sha,file,file`: which code the answer should draw on."""

    repo: str
    commit: str | None
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """One guardrail's decision; `explanation` is human-readable and never quotes the matched text."""

    guardrail: str
    action: Action
    explanation: str
    rule_ids: tuple[str, ...] = ()


@dataclass
class RequestContext:
    """What the gateway decided for one request, from headers to metrics."""

    task_type: str
    risk: Risk
    tenant: str
    context_refs: ContextRefs | None = None
    rule_id: str = ""
    model_alias: str = ""
    pack: str = "none"
    verdicts: list[Verdict] = field(default_factory=list)
    rag_status: str | None = None
    fim_format: str | None = None  # FIM sentinel format a /v1/completions prompt was split from
    fim_twins: Mapping[str, str] | None = None  # a /v1/completions request: the routing policy's FIM twin per alias
    extra_fields: tuple[str, ...] = ()  # top-level fields LiteLLM hands the provider unknown (fields.forwarded_extras)
    tools: str | None = None  # a request with tools: "sent" or "dropped" (routing policy `tools`)
    tools_dropped: tuple[str, ...] = ()  # sent tools the guardrails cannot check, taken out (`tools.unchecked`)
    held_tools: dict = field(default_factory=dict)  # tool fields taken out for a model that cannot call tools,
    held_unchecked: tuple[str, ...] = ()  # ... without the tools the guardrails cannot check (named here)
    auxiliary: str | None = None  # a client's housekeeping call (routing policy `auxiliary` id): no pack
    rag_sources: tuple[str, ...] = ()  # paths of the retrieved chunks, in rank order (x-carrot-rag-sources)
    key_metadata: dict = field(default_factory=dict)  # the API key's and its team's metadata (e.g. carrot_repos)
    team_metadata: dict = field(default_factory=dict)
    canary: str | None = None  # the alias whose canary chose this request's arm
    arm: str | None = None  # stable | candidate
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    authored: set[str] = field(default_factory=set)  # message texts the gateway wrote (pack, retrieved context)
    vaults: dict = field(default_factory=dict)  # placeholder vaults by kind (guardrails/vaults.py)
    call_type: str = ""  # LiteLLM's call type: which endpoint the request came in on
    client_instructions: str | None = None  # a Responses request's own `instructions`, before our pack and context
    answered_by: str | None = None  # the model group of the last deployment attempt when it was a fallback

    def author(self, message: dict) -> dict:
        """Mark a message the gateway adds: prompt guardrails check what callers send, not our own text."""
        self.authored.add(message["content"])
        return message

    def reroute(self, data: dict, alias: str, tools_capable: bool) -> bool:
        """Send the request to `alias` instead (a guardrail's escalation); tools held back for the first model
        go with it when it can call them. A /v1/completions request goes to the alias's FIM twin: False
        (nothing changed) when it has none."""
        if self.fim_twins is not None and alias not in self.fim_twins:
            return False
        data["model"] = self.fim_twins[alias] if self.fim_twins is not None else alias
        self.model_alias = alias
        if self.tools == "dropped" and self.held_tools.get("tools") and tools_capable:
            data.update(self.held_tools)
            self.tools, self.tools_dropped = "sent", self.held_unchecked
        return True

    def guardrail_summary(self) -> str:
        """`name:action` pairs for the `x-carrot-guardrails` header ("none" when nothing fired)."""
        fired = [f"{v.guardrail}:{v.action}" for v in self.verdicts if v.action != "pass"]
        return ",".join(dict.fromkeys(fired)) or "none"


_KEY = "carrot"
log = logging.getLogger("carrot.context")


def risk_of(ctx: RequestContext | None, stage: str) -> Risk:
    """The request's risk level; fail closed: a request without the gateway's context is `high`."""
    if ctx is not None:
        return ctx.risk
    log.warning("%s: request reached it without the gateway's context (not routed by carrot_hooks.gateway); "
                "handled as risk level high", stage)
    return "high"


def attach(data: dict, ctx: RequestContext) -> None:
    """Store `ctx` on a LiteLLM request dict (in its metadata, which travels to every hook; on the Anthropic
    route `metadata` is the client's own field, sent upstream, and LiteLLM's is `litellm_metadata`)."""
    data.setdefault("litellm_metadata" if "litellm_metadata" in data else "metadata", {})[_KEY] = ctx


def get_context(data: dict | None) -> RequestContext | None:
    """The context the gateway attached to a LiteLLM request dict, if any."""
    if not data:
        return None
    for meta_key in ("metadata", "litellm_metadata"):
        ctx = (data.get(meta_key) or {}).get(_KEY)
        if isinstance(ctx, RequestContext):
            return ctx
    return None
