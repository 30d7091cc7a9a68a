"""The one place that composes the request path:
headers → route → prompt pack → context → (LiteLLM guardrails) → LiteLLM → response headers → metrics."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection

from litellm.integrations.custom_logger import CustomLogger

from . import cache as result_cache
from . import metrics, rag
from .config import ConfigError, Watched, policy_dir
from .context import RequestContext, attach, get_context
from .errors import GatewayError
from .headers import parse_headers
from .prompts import PackStore, pack_message, prompts_dir
from .routing import RoutingPolicy, route
from .tokens import count_tokens, prompt_text
from .upstream import as_gateway_error, upstream_models

log = logging.getLogger("carrot.gateway")

CHAT_CALLS = frozenset({"completion", "acompletion"})
TEXT_CALLS = frozenset({"text_completion", "atext_completion"})
# Other prompt-carrying endpoints LiteLLM serves; refused so nothing bypasses routing and guardrails.
UNROUTED_CALLS = frozenset({"responses", "aresponses", "anthropic_messages", "aanthropic_messages"})


def served_aliases() -> frozenset[str]:
    """Model aliases the running proxy serves (its `model_list` names)."""
    from litellm.proxy import proxy_server

    router = proxy_server.llm_router
    return frozenset(router.registry().names()) if router is not None else frozenset()


def _alias_problems(policy: RoutingPolicy) -> list[str]:
    """Rules or FIM entries naming an alias the proxy does not serve (none known before the router exists)."""
    served = served_aliases()
    return policy.unknown_aliases(served) if served else []


def _check_size(headers: dict[str, str], text: str, limit: int) -> None:
    """413 over the body limit: Content-Length, or for a chunked upload the text it carried."""
    size = headers.get("content-length", "")
    over = int(size) if size.isdigit() else len(text.encode())
    if over > limit:
        raise GatewayError(413, f"Request body of {over} bytes exceeds the limit of {limit} bytes", param="body")


def _check_body(data: dict, call_type: str) -> None:
    """400 naming the missing or malformed field."""
    if call_type in CHAT_CALLS:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(400, "Field 'messages' must be a non-empty list of messages", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise GatewayError(400, f"Field 'messages[{i}]' must be an object with a 'role'", param="messages")
            if not _valid_content(m.get("content")):
                raise GatewayError(400, f"Field 'messages[{i}].content' must be a string, null, or a list of "
                                   "content parts (objects with a 'type')", param=f"messages[{i}].content")
    elif call_type in TEXT_CALLS and not _valid_prompt(data.get("prompt")):
        raise GatewayError(400, "Field 'prompt' must be a string or a non-empty list of strings or token ids",
                           param="prompt")


def _valid_content(content) -> bool:
    """OpenAI's message content forms: text, null (assistant tool calls), or typed content parts."""
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in content)


def _valid_prompt(prompt) -> bool:
    """OpenAI's prompt forms: a string, or a non-empty list of strings, of token ids, or of token-id lists."""
    if isinstance(prompt, str):
        return True
    if not isinstance(prompt, list) or not prompt:
        return False
    return (all(isinstance(p, str) for p in prompt) or all(type(p) is int for p in prompt)
            or all(isinstance(p, list) and p and all(type(t) is int for t in p) for p in prompt))


def _cache_controls(data: dict, headers: dict[str, str], namespace: str) -> None:
    """Client cache controls (body `cache`, `Cache-Control: no-cache`) plus our tenant partition."""
    controls = data.get("cache") if isinstance(data.get("cache"), dict) else {}
    if "no-cache" in headers.get("cache-control", "").lower():
        controls["no-cache"] = True
    controls["namespace"] = namespace  # never the client's: it would cross tenants
    data["cache"] = controls


class CarrotGateway(CustomLogger):
    """LiteLLM callback that routes each request, injects its prompt pack and context, and reports."""

    def __init__(self) -> None:
        super().__init__()
        self.routing = Watched(policy_dir() / "routing.yaml", RoutingPolicy, check=_alias_problems)
        self.packs = PackStore(prompts_dir())
        for spec in self.routing.get().tasks.values():
            self.packs.get(spec.pack)  # a missing pack fails start-up, naming the file
        result_cache.configure()
        if os.environ.get("CARROT_RAG_WARM", "1") == "1":  # load the embedding model off the request path
            threading.Thread(target=_warm_rag, name="carrot-rag-warm", daemon=True).start()

    def _decide(self, policy: RoutingPolicy, data: dict, call_type: str, headers: dict[str, str],
                key_meta: dict, tenant: str) -> RequestContext:
        _check_body(data, call_type)
        text = prompt_text(data)
        _check_size(headers, text, policy.max_body_bytes)
        served = served_aliases()
        problems = policy.unknown_aliases(served)  # a file that was already bad before the router existed
        if problems:
            raise GatewayError(503, f"{self.routing.path}: {'; '.join(problems)}", code="routing_policy_error")
        aliases = served - set(policy.fim.values())  # FIM twins are reached through routing, never named
        pins = {a for a in aliases if "@" in a}
        h = parse_headers(headers, policy.tasks, pins)
        requested = str(data.get("model") or "")
        if "@" in requested and requested not in pins and requested.split("@", 1)[0] in aliases:
            raise GatewayError(400, f"Unknown pinned version in field 'model': known pinned aliases are "
                               f"{', '.join(sorted(pins))}", param="model")
        virtual = policy.virtual_models()
        default_task = policy.default_completion_task_type if call_type in TEXT_CALLS else policy.default_task_type
        task = h.task_type or virtual.get(requested) or _key_task(key_meta, policy.tasks) or default_task
        client_alias = h.pin or (requested if requested in aliases and requested not in virtual else None)
        risk = h.risk or policy.default_risk
        tokens = count_tokens(text)
        decision = route(policy, task_type=task, risk=risk, tokens=tokens, client_alias=client_alias)
        if call_type in TEXT_CALLS and decision.model not in policy.fim:
            raise GatewayError(400, f"/v1/completions routed to {decision.model} (rule {decision.rule_id}), which has "
                               f"no fill-in-the-middle deployment ({self.routing.path}: fim); use "
                               "/v1/chat/completions", param="model", code="no_fim_deployment")
        return RequestContext(task_type=task, risk=risk, tenant=tenant, context_refs=h.context_refs,
                              rule_id=decision.rule_id, model_alias=decision.model)

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """headers → route → prompt pack → context; raises a 4xx naming the problem."""
        if call_type in UNROUTED_CALLS:
            raise GatewayError(400, f"This gateway routes /v1/chat/completions and /v1/completions only "
                               f"(call type {call_type} is not served)", code="unsupported_endpoint")
        if call_type not in CHAT_CALLS | TEXT_CALLS:
            return data
        t0 = time.perf_counter()
        headers = {k.lower(): str(v) for k, v in
                   ((data.get("proxy_server_request") or {}).get("headers") or {}).items()}
        tenant = user_api_key_dict.team_id or user_api_key_dict.token or "anonymous"
        policy = self.routing.get()  # one version for the whole request, even if the file changes meanwhile
        ctx = self._decide(policy, data, call_type, headers, user_api_key_dict.metadata or {}, tenant)
        t1 = time.perf_counter()
        if call_type in TEXT_CALLS:
            data["model"] = policy.fim[ctx.model_alias]
        else:
            data["model"] = ctx.model_alias
            try:
                pack = self.packs.get(policy.tasks[ctx.task_type].pack)
            except ConfigError as e:  # a pack file removed or broken while the proxy runs
                raise GatewayError(503, str(e), code="prompt_pack_error") from None
            ctx.pack = pack.ref
            data["messages"] = [ctx.author(pack_message(pack)), *data["messages"]]
        attach(data, ctx)
        t2 = time.perf_counter()
        if ctx.task_type in ("rag-code", "rag-doc") or ctx.context_refs is not None:
            await rag.inject_context(ctx, data)
        t3 = time.perf_counter()
        _cache_controls(data, headers, result_cache.namespace(tenant, upstream_models(data["model"])))
        ctx.timings.update(route=t1 - t0, prompt_pack=t2 - t1, context=t3 - t2, cache_key=time.perf_counter() - t3)
        for stage, seconds in ctx.timings.items():
            metrics.HOOK_DURATION.labels(stage).observe(seconds)
        return data

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        """Upstream failures become 502/503/504 naming the upstream URL; every failure is counted."""
        ctx = get_context(request_data)
        mapped = as_gateway_error(original_exception, str(request_data.get("model") or ctx.model_alias)) if ctx else None
        if mapped is not None:  # LiteLLM's /v1/completions ignores the returned error and reads these instead
            original_exception.status_code, original_exception.message = mapped.status_code, mapped.message
        status = getattr(mapped or original_exception, "status_code", None) or 500
        metrics.REQUESTS.labels(ctx.task_type if ctx else "unknown", ctx.model_alias if ctx else "none",
                                ctx.rule_id if ctx else "none", "false", str(status)).inc()
        return mapped

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        """Request count, latency and tokens per task type and model alias."""
        ctx = get_context(kwargs) or get_context(kwargs.get("litellm_params"))
        if ctx is None:
            return
        hit = bool(kwargs.get("cache_hit"))
        metrics.REQUESTS.labels(ctx.task_type, ctx.model_alias, ctx.rule_id, str(hit).lower(), "200").inc()
        metrics.REQUEST_DURATION.labels(ctx.task_type, ctx.model_alias).observe(time.perf_counter() - ctx.started)
        usage = getattr(response_obj, "usage", None)
        if usage is not None:
            metrics.TOKENS.labels("input", ctx.model_alias).inc(getattr(usage, "prompt_tokens", 0) or 0)
            metrics.TOKENS.labels("output", ctx.model_alias).inc(getattr(usage, "completion_tokens", 0) or 0)

    async def async_post_call_response_headers_hook(
        self, data, user_api_key_dict, response, request_headers=None, litellm_call_info=None
    ):
        """`x-carrot-*` headers explaining what the gateway did, streaming included."""
        ctx = get_context(data)
        if ctx is None:
            return None
        hidden = getattr(response, "_hidden_params", None) or {}
        headers = {
            "x-carrot-route": ctx.rule_id,
            "x-carrot-model": ctx.model_alias,
            "x-carrot-prompt-pack": ctx.pack,
            "x-carrot-task-type": ctx.task_type,
            "x-carrot-guardrails": ctx.guardrail_summary(),
            "x-carrot-cache": "hit" if hidden.get("cache_hit") else "miss",
        }
        if ctx.rag_status is not None:
            headers["x-carrot-rag"] = ctx.rag_status
        return headers


def _warm_rag() -> None:
    try:
        rag.warm()
    except Exception as e:  # noqa: BLE001 - the store may come later; requests say x-carrot-rag: unavailable
        log.warning("RAG warm-up failed (%s); retrieval will retry on first use", type(e).__name__)


def _key_task(meta: dict, tasks: Collection[str]) -> str | None:
    """A key's default task type from its metadata (e.g. the CI bot's key → ci)."""
    task = meta.get("task_type") if isinstance(meta, dict) else None
    return task if task in tasks else None


gateway = CarrotGateway()
