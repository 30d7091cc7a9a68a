"""The one place that composes the request path. Its order, before and after the model call:

    CarrotGateway (this callback, first in litellm_settings.callbacks), `PRE_CALL_STAGES`:
        headers+route → prompt pack → context (RAG) → cache key
    LiteLLM guardrails, `GUARDRAILS` (checked against litellm_config.yaml at start-up):
        carrot-prompt-policy → carrot-pii → [LiteLLM: cache, router, upstream] → carrot-output
    after the call: response headers (`x-carrot-*`), metrics, request log (`reqlog`)
"""

# No `from __future__ import annotations`: LiteLLM loads this file outside sys.modules, where
# dataclasses cannot resolve postponed annotations.
import json
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import quote

from litellm.integrations.custom_logger import CustomLogger

from . import cache as result_cache
from . import fim, metrics, outages, rag, reqlog
from . import litellm_compat as compat
from .config import ConfigError, Watched, load_yaml, policy_dir
from .context import RequestContext, attach, get_context
from .endpoints import (
    AGENT_CALLS,
    RESPONSES_CALLS,
    has_tools,
    named,
    put_system,
    refuse_unchecked,
    system_texts,
    unchecked_tools,
)
from .env import env_bool
from .errors import GatewayError, http_status, no_fim_deployment
from .fields import check_fields, forwarded_extras
from .guardrails import egress
from .guardrails.engines import in_thread, shared_engines
from .guardrails.metrics import record as record_verdict
from .headers import parse_headers
from .http_edge import error_headers
from .messages import CHAT_CALLS, PROMPT_CALLS, TEXT_CALLS, last_user_words, prompt_text
from .overrides import pack_override
from .prompts import PackStore, PromptPack, pack_message, prompts_dir
from .rollout import rollouts
from .routing import RoutingPolicy, route, tools_verdict
from .upstream import as_gateway_error, tools_capable, upstream_models

log = logging.getLogger("carrot.gateway")

# The guardrails in the order LiteLLM must run them (name, mode, class), as litellm_config.yaml lists them.
GUARDRAILS = (
    ("carrot-prompt-policy", "pre_call", "carrot_hooks.guardrails.policy_guardrail.PromptPolicyGuardrail"),
    ("carrot-pii", "pre_call", "carrot_hooks.guardrails.pii_guardrail.PiiGuardrail"),
    ("carrot-output", "post_call", "carrot_hooks.guardrails.output_guardrail.OutputGuardrail"),
)


def check_guardrail_order(config_path) -> list[str]:
    """Problems with the `guardrails:` list of the proxy config against `GUARDRAILS` (empty when in order)."""
    listed = tuple((g.get("guardrail_name"), (g.get("litellm_params") or {}).get("mode"),
                    (g.get("litellm_params") or {}).get("guardrail"))
                   for g in (load_yaml(config_path) or {}).get("guardrails") or ())
    if listed == GUARDRAILS:
        return []
    return [(f"{config_path}: guardrails: expected {[g[0] for g in GUARDRAILS]} with modes and classes "
            f"{[g[1:] for g in GUARDRAILS]}, got {list(listed)}")]


def _alias_problems(policy: RoutingPolicy) -> list[str]:
    """Rules or FIM entries naming an alias the proxy does not serve (none known before the router exists)."""
    served = compat.served_aliases()
    return policy.unknown_aliases(served) if served else []


def _check_body(data: dict, call_type: str) -> None:
    """400 naming the missing or malformed field."""
    if data.get("stream") is not None and not isinstance(data["stream"], bool):
        raise GatewayError(400, "Field 'stream' must be true or false", param="stream")
    check_fields(data, call_type)
    if call_type in AGENT_CALLS:
        refuse_unchecked(data, call_type)
    elif call_type in CHAT_CALLS:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(400, "Field 'messages' must be a non-empty list of messages", param="messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise GatewayError(400, f"Field 'messages[{i}]' must be an object with a 'role'", param="messages")
            if m["role"] not in CHAT_ROLES:
                raise GatewayError(400, f"Field 'messages[{i}].role' must be one of {', '.join(CHAT_ROLES)} (got "
                                   f"{m['role'][:40]!r})", param=f"messages[{i}].role")
            _check_content(m.get("content"), m["role"], f"messages[{i}].content")
            if m.get("tool_calls"):  # null and [] are what some SDKs put on every message
                _check_tool_calls(m, f"messages[{i}].tool_calls")
            if m.get("function_call") is not None:  # the legacy form of one call
                _check_function(m["function_call"], f"messages[{i}].function_call")
    elif call_type in TEXT_CALLS and not _valid_prompt(data.get("prompt")):
        raise GatewayError(400, "Field 'prompt' must be a string or a non-empty list of strings or token ids",
                           param="prompt")


def _choosable(policy: RoutingPolicy, served: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The aliases a client may name (FIM twins are reached through routing, never named) and the pins among them."""
    aliases = served - set(policy.fim.values())
    return aliases, frozenset(a for a in aliases if "@" in a)


def _check_model(policy: RoutingPolicy, requested: str, aliases: frozenset[str], pins: frozenset[str]) -> None:
    """400 for a `model` naming a FIM twin or an unknown pinned version (any other name is routed by the rules)."""
    twin_of = {twin: alias for alias, twin in policy.fim.items()}
    if requested in twin_of:
        raise GatewayError(400, f"Model {requested} is a fill-in-the-middle deployment that /v1/completions "
                           f"reaches through routing: name {twin_of[requested]} (or a carrot-* model)",
                           param="model", code="fim_twin_named")
    if "@" in requested and requested not in pins and requested.split("@", 1)[0] in aliases:
        raise GatewayError(400, f"Unknown pinned version in field 'model': known pinned aliases are "
                           f"{', '.join(sorted(pins))}", param="model")


def _check_tool_calls(message: dict, field: str) -> None:
    """An assistant turn's tool calls: a list of OpenAI's function or custom calls."""
    if message["role"] != "assistant":
        raise GatewayError(400, f"Field '{field}' is only valid on assistant messages (role is "
                           f"{message['role']!r})", param=field)
    calls = message["tool_calls"]
    if not isinstance(calls, list):
        raise GatewayError(400, f"Field '{field}' must be a list of tool calls", param=field)
    for j, call in enumerate(calls):
        kind = call.get("type", "function") if isinstance(call, dict) else None
        if kind == "function":
            _check_function(call.get("function"), f"{field}[{j}].function")
        elif kind == "custom":
            custom = call.get("custom")
            if not (named(custom) and isinstance(custom.get("input"), str)):
                raise GatewayError(400, f"Field '{field}[{j}].custom' must be an object with a non-empty 'name' and "
                                   "a string 'input'", param=f"{field}[{j}].custom")
        else:
            raise GatewayError(400, f"Field '{field}[{j}]' must be an object whose 'type' is function or custom",
                               param=f"{field}[{j}]")


def _check_function(fn, where: str) -> None:
    """A function call (in `tool_calls` or the legacy `function_call`): a name and JSON-text arguments (what every
    upstream format is converted from; Ollama's converter parses them). Empty arguments, which several models and
    clients record for a call without parameters, become "{}"."""
    if not named(fn):
        raise GatewayError(400, f"Field '{where}' must be an object with a non-empty 'name'", param=where)
    if fn.get("arguments") is None or (isinstance(fn["arguments"], str) and not fn["arguments"].strip()):
        fn["arguments"] = "{}"
    try:
        json.loads(fn["arguments"])
    except (TypeError, ValueError):
        raise GatewayError(400, f"Field '{where}.arguments' must be a JSON text (e.g. \"{{}}\")",
                           param=f"{where}.arguments") from None


CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# The content part types each role may send in OpenAI's chat API (for user messages LiteLLM's list, a little
# longer: document, video_url, ...), and what the payload of a part of each type must be.
ROLE_PARTS = {"system": ("text",), "developer": ("text",), "user": compat.USER_CONTENT_TYPES,
              "assistant": ("text", "refusal"), "tool": ("text",), "function": ()}
PART_PAYLOADS = {
    "text": (lambda p: isinstance(p.get("text"), str), "text", "must be a string"),
    "refusal": (lambda p: isinstance(p.get("refusal"), str), "refusal", "must be a string"),
    "image_url": (lambda p: isinstance(p.get("image_url"), str) or isinstance(p.get("image_url"), dict)
                  and isinstance(p["image_url"].get("url"), str), "image_url",
                  "must be a URL string or an object with a string 'url'"),
    "input_audio": (lambda p: isinstance(p.get("input_audio"), dict) and all(
        isinstance(p["input_audio"].get(k), str) for k in ("data", "format")), "input_audio",
        "must be an object with string 'data' and 'format'"),
    "file": (lambda p: isinstance(p.get("file"), dict), "file", "must be an object"),
}


def _check_content(content, role: str, where: str) -> None:
    """OpenAI's message content forms: text, null (assistant tool calls), or content parts of the types `role`
    may send, each with its payload (LiteLLM checks them only after routing, where a failure is a 5xx)."""
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise GatewayError(400, f"Field '{where}' must be a string, null, or a list of content parts", param=where)
    allowed = ROLE_PARTS[role]
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise GatewayError(400, f"Field '{at}' must be a content part (an object with a string 'type')", param=at)
        if part["type"] not in allowed:
            raise GatewayError(400, f"Field '{at}' is of type {part['type'][:40]!r}, which {role} messages cannot "
                               f"carry (allowed: {', '.join(allowed) or 'none: content must be a string'})",
                               param=at)
        ok, field, what = PART_PAYLOADS.get(part["type"], (lambda p: True, "", ""))
        if not ok(part):
            raise GatewayError(400, f"Field '{at}.{field}' {what}", param=f"{at}.{field}")


def _check_carried(messages: list, alias: str) -> None:
    """400 naming the first content part or tool call (valid, see `_check_content`) that LiteLLM cannot convert
    for a provider serving `alias` (`compat.CARRIED`): it would fail there before sending, as a 5xx."""
    for provider in sorted(compat.providers(alias) & compat.CARRIED.keys()):
        parts, calls = compat.CARRIED[provider]
        for i, m in enumerate(messages):
            content = m["content"] if isinstance(m.get("content"), list) else []
            items = [(f"content[{j}]", p["type"], parts) for j, p in enumerate(content)]
            items += [(f"tool_calls[{j}]", c.get("type", "function"), calls)
                      for j, c in enumerate(m.get("tool_calls") or [])]
            for where, kind, takes in items:
                if kind not in takes:
                    raise GatewayError(400, f"Field 'messages[{i}].{where}' is of type {kind!r}, which model {alias} "
                                       f"({provider}) cannot take (it takes {', '.join(takes)})",
                                       param=f"messages[{i}].{where}")


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


COUNTED_CALL = "anthropic_messages"  # what /v1/messages/count_tokens counts: the same body on /v1/messages


def _tenant(key) -> str:
    """Whose request it is, for the cache partition and the canary arm: the team, else the key."""
    return key.team_id or key.token or "anonymous"


@dataclass
class Call:
    """One request as the pre-call stages see it; `route` sets `ctx`."""

    data: dict
    call_type: str
    headers: dict[str, str]
    policy: RoutingPolicy
    key: object  # LiteLLM's UserAPIKeyAuth
    ctx: RequestContext = None  # type: ignore[assignment]


class CarrotGateway(CustomLogger):
    """LiteLLM callback that routes each request, injects its prompt pack and context, and reports."""

    def __init__(self) -> None:
        super().__init__()
        # LiteLLM loads this file by path from its config's directory, the modules it imports from sys.path
        log.warning("carrot_hooks.gateway from %s, carrot_hooks.cache from %s", __file__, result_cache.__file__)
        compat.check_version()
        compat.tolerate_lost_context_vars()
        reqlog.install()  # the request log is the gateway's, whichever guardrails are switched on
        outages.install()  # one log line per upstream outage instead of a traceback per request
        self.routing = Watched(policy_dir() / "routing.yaml", RoutingPolicy, check=_alias_problems)
        self.packs = PackStore(prompts_dir())
        for spec in self.routing.get().tasks.values():
            self.packs.get(spec.pack)  # a missing pack fails start-up, naming the file
        result_cache.configure()
        compat.install_http_edge(lambda: frozenset(self.routing.get().fim.values()),
                                 lambda: self.routing.get().max_body_bytes)
        compat.serve_token_count(self.count_tokens)  # never the provider's count: no callback runs there
        compat.local_token_counts_only()
        self.stages = (("route", self._route), ("prompt_pack", self._prompt_pack), ("context", self._context),
                       ("cache_key", self._cache_key))
        rag.search_processes()  # a bad CARROT_SEARCH_PROCESSES stops start-up, naming it
        if env_bool("CARROT_RAG_WARM", True):  # start the search processes off the request path
            threading.Thread(target=_warm_rag, name="carrot-rag-warm", daemon=True).start()

    def _decide(self, policy: RoutingPolicy, data: dict, call_type: str, headers: dict[str, str],
                key: compat.UserAPIKeyAuth, tenant: str) -> RequestContext:
        _check_body(data, call_type)
        text = prompt_text(data)
        served = compat.served_aliases()
        problems = policy.unknown_aliases(served)  # a file that was already bad before the router existed
        if problems:
            raise GatewayError(503, f"policy/{self.routing.path.name}: {'; '.join(problems)}", code="routing_policy_error")
        aliases, pins = _choosable(policy, served)
        h = parse_headers(headers, policy.tasks, pins)
        requested = str(data.get("model") or "")
        _check_model(policy, requested, aliases, pins)
        virtual = policy.virtual_models()
        default_task = policy.default_completion_task_type if call_type in TEXT_CALLS else policy.default_task_type
        task = h.task_type or virtual.get(requested) or _key_task(key.metadata or {}, policy.tasks) or default_task
        client_alias = h.pin or (requested if requested in aliases and requested not in virtual else None)
        risk = h.risk or policy.default_risk
        tokens = policy.routing_size(text, compat.count_tokens)
        tools = has_tools(data)
        decision = route(policy, task_type=task, risk=risk, tokens=tokens, client_alias=client_alias, tools=tools)
        ctx = RequestContext(task_type=task, risk=risk, tenant=tenant, call_type=call_type, context_refs=h.context_refs,
                             rule_id=decision.rule_id, model_alias=decision.model,
                             key_metadata=key.metadata or {}, team_metadata=key.team_metadata or {})
        if call_type in RESPONSES_CALLS:  # what its answer repeats: never our pack or context, nor redacted
            ctx.client_instructions = data.get("instructions")
        if tools:
            ctx.tools = tools_verdict(policy, decision, tools_capable(decision.model))
            if ctx.tools == "sent" and call_type in AGENT_CALLS:
                ctx.tools_dropped = tuple(unchecked_tools(data, call_type, policy.tools.unchecked))
                if not data.get("tools"):  # every tool was one the guardrails cannot check
                    ctx.tools = "dropped"
        if call_type not in TEXT_CALLS:
            ctx.auxiliary = policy.auxiliary_call(system_texts(data, call_type), last_user_words(data, call_type))
        return ctx

    def count_tokens(self, data, headers: dict[str, str], key: compat.UserAPIKeyAuth) -> dict:
        """POST /v1/messages/count_tokens (Claude Code), answered here with LiteLLM's local count: its own route
        sends the conversation to the provider's token-count endpoint unchecked and unredacted. The body and the
        gateway headers are checked as on /v1/messages (refused the same way), and the count is of what that
        request would send: the task's prompt pack included (retrieved context is not: a count never retrieves)."""
        if not isinstance(data, dict):
            raise GatewayError(400, "Request body must be a JSON object", param="body")
        if not isinstance(data.get("model"), str) or not data["model"].strip():
            raise GatewayError(400, "Field 'model' must be a non-empty string", param="model")
        policy, body = self.routing.get(), dict(data)
        ctx = self._decide(policy, body, COUNTED_CALL, headers, key, _tenant(key))
        pack = self._pack(policy, ctx, headers, key)
        if pack is not None:
            put_system(body, COUNTED_CALL, pack_message(pack)["content"])
        system = [{"role": "system", "content": body["system"]}] if body.get("system") else []
        tools = None if ctx.tools == "dropped" else body.get("tools")  # held back from a model that cannot call them
        return {"input_tokens": compat.count_message_tokens(system + body["messages"], tools)}

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """Run `self.stages` in order, each timed; raises a 4xx naming the problem."""
        if call_type not in PROMPT_CALLS:  # embeddings, images, audio, other APIs: nothing may bypass the guards
            raise GatewayError(400, f"This gateway routes /v1/chat/completions, /v1/completions, /v1/responses and "
                               f"/v1/messages only (call type {call_type} is not served)", code="unsupported_endpoint")
        headers = {k.lower(): str(v) for k, v in
                   ((data.get("proxy_server_request") or {}).get("headers") or {}).items()}
        # one policy version for the whole request, even if the file changes meanwhile
        call = Call(data, call_type, headers, self.routing.get(), user_api_key_dict)
        timings: dict[str, float] = {}
        for name, stage in self.stages:
            t0 = time.perf_counter()
            await stage(call)
            timings[name] = time.perf_counter() - t0
        call.ctx.timings.update(timings)
        for name, seconds in timings.items():
            metrics.HOOK_DURATION.labels(name).observe(seconds)
        return data

    async def _route(self, call: Call) -> None:
        """Headers and routing rules decide task, risk and model alias (the FIM twin for completions)."""
        call.ctx = self._decide(call.policy, call.data, call.call_type, call.headers, call.key, _tenant(call.key))
        if call.call_type in TEXT_CALLS and call.ctx.model_alias not in call.policy.fim:
            attach(call.data, call.ctx)  # the refusal says what was decided (x-carrot-* headers), as later errors
            raise no_fim_deployment(f"/v1/completions routed to {call.ctx.model_alias} (rule {call.ctx.rule_id})")
        await rollouts.apply(call.policy.canaries, call.ctx)  # a canaried alias -> its sticky arm's pin
        call.data["model"] = (call.policy.fim[call.ctx.model_alias] if call.call_type in TEXT_CALLS
                              else call.ctx.model_alias)
        if call.call_type in CHAT_CALLS:
            attach(call.data, call.ctx)  # the refusal says what was decided (x-carrot-* headers)
            _check_carried(call.data["messages"], call.data["model"])
        call.ctx.extra_fields = forwarded_extras(call.data, call.call_type)
        if call.call_type in TEXT_CALLS:
            call.ctx.fim_format = fim.split_sentinels(call.data)
            call.ctx.fim_twins = call.policy.fim
        if call.ctx.tools == "dropped":  # held: an escalation to a model that can call tools gives them back,
            held = {f: call.data.pop(f) for f in ("tools", "tool_choice", "parallel_tool_calls") if f in call.data}
            if call.call_type in AGENT_CALLS:  # but never one the guardrails cannot check
                call.ctx.held_unchecked = tuple(unchecked_tools(held, call.call_type, "drop"))
            call.ctx.held_tools = held
        attach(call.data, call.ctx)

    async def _prompt_pack(self, call: Call) -> None:
        """The task's pack (or an admin's X-Carrot-Prompt-Pack) becomes the first system message, or goes
        before `instructions` / `system` on the agent endpoints."""
        pack = self._pack(call.policy, call.ctx, call.headers, call.key)
        if pack is None:
            return
        call.ctx.pack = pack.ref
        if call.call_type in AGENT_CALLS:
            put_system(call.data, call.call_type, call.ctx.author(pack_message(pack))["content"])
        else:
            call.data["messages"] = [call.ctx.author(pack_message(pack)), *call.data["messages"]]

    def _pack(self, policy: RoutingPolicy, ctx: RequestContext, headers: dict[str, str], key) -> PromptPack | None:
        """The pack a request gets: none for completions, raw code, nor for clients' auxiliary calls such as
        titles. An X-Carrot-Prompt-Pack from a non-admin key is a 403 on any endpoint."""
        override = pack_override(headers, key, self.packs)
        if ctx.call_type in TEXT_CALLS or ctx.auxiliary is not None:
            return None
        try:
            return self.packs.get(override or policy.tasks[ctx.task_type].pack)
        except ConfigError as e:  # a pack file removed or broken while the proxy runs
            raise GatewayError(503, str(e), code="prompt_pack_error") from None

    async def _context(self, call: Call) -> None:
        """Retrieved code/doc context for rag tasks or requests naming X-Context-Refs."""
        if call.ctx.auxiliary is not None or not (call.ctx.task_type in ("rag-code", "rag-doc")
                                                  or call.ctx.context_refs is not None):
            return
        if call.call_type not in AGENT_CALLS:
            await rag.inject_context(call.ctx, call.data)
            return
        # the agent endpoints: retrieve for the last user text, put the block with the pack
        probe = {"messages": [{"role": "user", "content": last_user_words(call.data, call.call_type)}]}
        await rag.inject_context(call.ctx, probe)
        for m in probe["messages"][:-1]:
            put_system(call.data, call.call_type, call.ctx.author(m)["content"])

    async def _cache_key(self, call: Call) -> None:
        """The result cache's partition: tenant × the exact upstream model."""
        _cache_controls(call.data, call.headers,
                        result_cache.namespace(call.ctx.tenant, upstream_models(call.data["model"])))

    async def async_pre_call_deployment_hook(self, kwargs: dict, call_type):
        """Per deployment attempt (fallbacks included): note a fallback's group for the headers; egress:
        redact for an external upstream, failing closed."""
        ctx = get_context(kwargs)
        if ctx is not None:
            ctx.answered_by = compat.fallback_group(kwargs)
        engines = shared_engines()
        if not egress.needed(kwargs, engines):  # e.g. internal deployments: nothing to redact, no thread
            return kwargs
        try:
            verdict = await in_thread(engines.watched.get().pii.timeout_ms / 1000, egress.protect, kwargs, engines,
                                      str(call_type))
        except GatewayError as e:
            egress.refused(ctx, e.message)
            raise
        except Exception as e:  # noqa: BLE001 - nothing unredacted may leave when the redaction itself fails
            log.error("egress redaction failed (%s); request not sent", type(e).__name__)
            egress.refused(ctx, f"redaction failed ({type(e).__name__}): rule egress-failure")
            raise GatewayError(503, f"Egress redaction failed ({type(e).__name__}); the request was not sent "
                               "upstream (rule egress-failure)", code="guardrail_unavailable") from None
        if verdict is not None:
            record_verdict(ctx, verdict)
        return kwargs

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        """Upstream failures become 502/503/504 naming the upstream URL; every failure is counted."""
        ctx = get_context(request_data)
        mapped = as_gateway_error(original_exception, str(request_data.get("model") or ctx.model_alias)) if ctx else None
        if mapped is not None:
            compat.set_error(original_exception, mapped.status_code, mapped.message)
        if ctx is not None and isinstance(request_data.get("litellm_call_id"), str):
            error_headers.remember(request_data["litellm_call_id"], {**self._carrot_headers(ctx, request_data, None),
                                                                     **((mapped and mapped.headers) or {})})
        status = http_status(mapped or original_exception)
        metrics.REQUESTS.labels(ctx.task_type if ctx else "unknown", ctx.model_alias if ctx else "none",
                                ctx.rule_id if ctx else "none", "false", str(status)).inc()
        if ctx is not None:
            await rollouts.observe(self.routing.get().canaries, ctx, error=int(status) >= 500, latency=None)
        return mapped

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        """Request count, latency and tokens per task type and model alias."""
        ctx = get_context(kwargs) or get_context(kwargs.get("litellm_params"))
        if ctx is None:
            return
        hit = bool(kwargs.get("cache_hit"))
        metrics.REQUESTS.labels(ctx.task_type, ctx.model_alias, ctx.rule_id, str(hit).lower(), "200").inc()
        latency = time.perf_counter() - ctx.started
        metrics.REQUEST_DURATION.labels(ctx.task_type, ctx.model_alias).observe(latency)
        await rollouts.observe(self.routing.get().canaries, ctx, error=False, latency=latency)
        usage = getattr(response_obj, "usage", None)
        if usage is not None:
            metrics.TOKENS.labels("input", ctx.model_alias).inc(getattr(usage, "prompt_tokens", 0) or 0)
            metrics.TOKENS.labels("output", ctx.model_alias).inc(getattr(usage, "completion_tokens", 0) or 0)

    async def async_post_call_response_headers_hook(
        self, data, user_api_key_dict, response, request_headers=None, litellm_call_info=None
    ):
        """`x-carrot-*` headers explaining what the gateway did, streaming included."""
        ctx = get_context(data)
        return None if ctx is None else self._carrot_headers(ctx, data, response)

    def _carrot_headers(self, ctx: RequestContext, data: dict, response) -> dict[str, str]:
        """What the gateway did with this request (`response` None: it failed)."""
        headers = {
            "x-carrot-route": ctx.rule_id,
            "x-carrot-model": ctx.model_alias,
            "x-carrot-prompt-pack": ctx.pack,
            "x-carrot-task-type": ctx.task_type,
            "x-carrot-guardrails": ctx.guardrail_summary(),
            "x-carrot-cache": "hit" if compat.cache_hit(response, data) else "miss",
            "x-carrot-policy": f"routing@{self.routing.version},guardrails@{shared_engines().watched.version}",
        }
        if ctx.rag_status is not None:
            headers["x-carrot-rag"] = ctx.rag_status
        for name, value in (("fim", ctx.fim_format), ("tools", ctx.tools), ("auxiliary", ctx.auxiliary)):
            if value is not None:
                headers[f"x-carrot-{name}"] = value
        if ctx.tools_dropped:
            headers["x-carrot-tools-dropped"] = ",".join(ctx.tools_dropped)
        if response is not None and ctx.answered_by is not None and ctx.answered_by != ctx.model_alias:  # answered
            headers["x-carrot-model"] = ctx.answered_by
            headers["x-carrot-fallback"] = f"{ctx.model_alias} -> {ctx.answered_by}"
        if ctx.rag_sources:
            headers["x-carrot-rag-sources"] = ",".join(quote(p, safe="/._-@") for p in ctx.rag_sources)
        if ctx.arm is not None:
            headers["x-carrot-arm"] = ctx.arm
        return headers


def _warm_rag() -> None:
    try:
        rag.warm()
    except Exception as e:  # noqa: BLE001 - the store may come later; requests say x-carrot-rag: unavailable
        log.warning("RAG warm-up failed (%s: %s); retrieval will retry on first use", type(e).__name__, e)


def _key_task(meta: dict, tasks: Collection[str]) -> str | None:
    """A key's default task type from its metadata (e.g. the CI bot's key → ci)."""
    task = meta.get("task_type") if isinstance(meta, dict) else None
    return task if task in tasks else None


gateway = CarrotGateway()
