"""The one seam to LiteLLM beyond its public callback API (`CustomLogger` / `CustomGuardrail` hooks).

LiteLLM changes every week. Every use of its internals lives here, each with the reason we need
it, and `tests/test_litellm_contract.py` pins the behaviour each shim relies on, so an upgrade that
changes one fails a named test instead of the gateway silently. `check_version()` runs at start-up.
What needs no LiteLLM import (its version, its bundled tokenizer file) is in `litellm_bundle`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator

import litellm
from fastapi import (
    Request,  # read by FastAPI from this module's globals (serve_token_count)
)
from litellm.caching.caching import Cache
from litellm.caching.redis_cache import RedisCache
from litellm.proxy._types import (  # custom_auth's types
    LiteLLMRoutes,
    LitellmUserRoles,
    ProxyErrorTypes,
    ProxyException,
    UserAPIKeyAuth,
)
from litellm.text_completions.streaming_iterator import TextCompletionStreamWrapper
from litellm.types.litellm_params import STREAM_USAGE_INJECTED_FIELD
from litellm.types.utils import (
    ChatCompletionDeltaToolCall,
    Function,
    ModelResponse,
    TextCompletionResponse,
    Usage,
)

from .litellm_bundle import TESTED, count_tokens, installed_version

__all__ = [
    "TESTED",
    "ChatCompletionDeltaToolCall",
    "Function",
    "LiteLLMRoutes",
    "ProxyErrorTypes",
    "ProxyException",
    "RedisCache",
    "UserAPIKeyAuth",
    "count_tokens",
]

log = logging.getLogger("carrot.litellm_compat")


class LiteLLMContractError(RuntimeError):
    """LiteLLM no longer behaves the way a shim here relies on; the message names the shim."""


def check_version() -> bool:
    """Log clearly when the installed LiteLLM is outside the tested range; True when inside."""
    installed = installed_version()
    if installed in TESTED:
        return True
    log.error("LiteLLM %s is outside the range carrot_hooks was tested with (%s): run "
              "tests/test_litellm_contract.py before serving traffic", installed, TESTED)
    return False


# --- the proxy's router: only reachable as a module global of the proxy server ---------------

def router():
    """The running proxy's `litellm.Router` (None before the config is loaded)."""
    from litellm.proxy import proxy_server

    return proxy_server.llm_router


def served_aliases() -> frozenset[str]:
    """Model aliases the running proxy serves (its `model_list` names)."""
    r = router()
    return frozenset(r.registry().names()) if r is not None else frozenset()


def deployments(alias: str) -> list[dict]:
    """The `model_list` entries behind `alias` (litellm_params, model_info)."""
    r = router()
    return list((r.registry().deployments(alias) or ()) if r is not None else ())


def fallbacks(alias: str) -> list[str]:
    """The aliases the router falls back to after `alias`, in order."""
    r = router()
    out: list[str] = []
    for entry in (r.settings().fallbacks or ()) if r is not None else ():
        out += [m for m in entry.get(alias, ()) if m not in out]
    return out


def master_key() -> str | None:
    """The proxy's master key as it resolved it from the config."""
    from litellm.proxy import proxy_server

    return proxy_server.master_key


def is_proxy_admin(key) -> bool:
    """Whether a request's UserAPIKeyAuth is the proxy admin (the master key resolves to this role)."""
    return getattr(key, "user_role", None) == LitellmUserRoles.PROXY_ADMIN


def db_connected() -> bool:
    """Whether the proxy runs in database mode (its Prisma client exists)."""
    from litellm.proxy import proxy_server

    return proxy_server.prisma_client is not None


def request_route(request) -> str:
    """The route of a request as LiteLLM's auth sees it (mount prefixes stripped)."""
    from litellm.proxy.auth.auth_utils import get_request_route

    return get_request_route(request)


# --- request validation -----------------------------------------------------------------------

def _user_content_types() -> tuple[str, ...]:
    """The content part types LiteLLM accepts in a user message (it rejects others after routing, as a 5xx)."""
    from litellm.types.llms.openai import ValidUserMessageContentTypes

    return tuple(ValidUserMessageContentTypes)


USER_CONTENT_TYPES = _user_content_types()


# The content part and tool call types LiteLLM can convert for a provider, where they are fewer than the chat API
# lets a client send (its OpenAI-format providers, hosted_vllm and openai, send every part and call as written).
# For Ollama its converter sends text and images only (a stream served the rest dropped, silently), and a whole
# answer's handling counts the prompt's tokens once Ollama has answered, with a counter that fails on any other
# part type (refusal, input_audio, document, ...) and on a call without a `function`: the work done, then a 5xx.
CARRIED = {"ollama_chat": (("text", "image_url"), ("function",))}


def providers(alias: str) -> frozenset[str]:
    """The LiteLLM providers serving `alias`: each deployment's model prefix (ollama_chat, hosted_vllm, ...)."""
    return frozenset(str((d.get("litellm_params") or {}).get("model") or "").split("/", 1)[0]
                     for d in deployments(alias))


# request keys the proxy itself sets or reads before the hooks (priority, header-derived settings, key controls)
_PROXY_KEYS = frozenset({"priority", "router_settings_override", "disable_global_guardrails", "disable_fallbacks"})


def _own_params() -> frozenset[str]:
    """Request keys LiteLLM knows (its own routing, logging and credential parameters, the chat parameters and
    client settings it maps per provider): any other key goes to the provider as it is."""
    from litellm.constants import (
        DEFAULT_CHAT_COMPLETION_PARAM_VALUES,
        OPENAI_CHAT_COMPLETION_PARAMS,
    )
    from litellm.types.utils import all_litellm_params

    return frozenset(all_litellm_params) | frozenset(OPENAI_CHAT_COMPLETION_PARAMS) | frozenset(
        DEFAULT_CHAT_COMPLETION_PARAM_VALUES) | _PROXY_KEYS


LITELLM_PARAMS = _own_params()


# --- callbacks and responses ------------------------------------------------------------------

def add_callback(callback) -> None:
    """Register a callback object after the config loaded (the manager dedupes and routes it to every list)."""
    if not any(type(cb) is type(callback) for cb in litellm.callbacks):
        litellm.logging_callback_manager.add_litellm_callback(callback)


def cache_hit(response, data: dict) -> bool:
    """Whether LiteLLM served `response` from its cache: in its `_hidden_params`; for a plain-dict answer (the
    /v1/messages route) where LiteLLM's caching handler records it, the request's logging object; for a
    streamed Responses answer bridged to chat, in the hidden params of the chat stream under the router's
    stream wrapper (its own say nothing until the stream ends)."""
    chat = getattr(getattr(response, "_billing_source", None), "litellm_custom_stream_wrapper", None)
    hidden = getattr(chat if chat is not None else response, "_hidden_params", None)
    if hidden is not None:
        return bool(hidden.get("cache_hit"))
    details = getattr(data.get("litellm_logging_obj"), "model_call_details", None) or {}
    return bool(details.get("cache_hit"))


def fallback_group(kwargs: dict) -> str | None:
    """The model group a deployment attempt goes to when it is a fallback (else None), from the metadata the
    router stamps on each attempt (`model_group` vs `original_model_group`, in `litellm_metadata` where the
    request has one, as LiteLLM picks it: on /v1/messages `metadata` is the client's). A silent experiment's
    shadow call (LiteLLM's `silent_model`) shares the metadata and is no answer: None."""
    meta = kwargs.get("litellm_metadata" if "litellm_metadata" in kwargs else "metadata") or {}
    group = meta.get("model_group")
    if group is None or meta.get("is_silent_experiment"):
        return None
    return group if group != meta.get("original_model_group", group) else None


def install_http_edge(hidden_models, body_limit) -> None:
    """Put carrot_hooks.http_edge in front of the proxy's ASGI app (body limit, JSON bodies, /metrics, /v1/models)."""
    from litellm.proxy import proxy_server

    from .http_edge import install

    install(proxy_server.app, hidden_models, body_limit)


def set_error(exc: Exception, status: int, message: str) -> None:
    """Rewrite a failure's status and message in place: the proxy's /v1/completions route ignores the
    error a failure hook returns and reads these attributes of the original exception instead."""
    exc.status_code, exc.message = status, message


def tolerate_lost_context_vars() -> None:
    """LiteLLM 1.110 restores its request-scoped context variables (the Redis-call label `service_target`, the
    caller, mirrored/resent flags) on leaving each block, skipping a token from another context (ValueError) but
    not a variable already gone (LookupError), which its router's cache reads now and then meet under
    concurrency: the request fails with a 500 (seen at carrot-eval's concurrency 4). Gone is the state the
    reset would leave, so it is skipped too, with one warning naming the variable."""
    from litellm import _internal_context as ctxvars

    original = getattr(ctxvars, "_restore", None)
    if original is None:
        log.warning("litellm._internal_context._restore is gone: tolerate_lost_context_vars not installed")
        return
    if getattr(original, "carrot_tolerant", False):
        return
    warned: set[str] = set()

    @functools.wraps(original)
    def restore(var, token) -> None:
        try:
            original(var, token)
        except LookupError:
            if var.name not in warned:
                warned.add(var.name)
                log.warning("LiteLLM lost its context variable %r before restoring it; skipped (reported once)",
                            var.name)

    restore.carrot_tolerant = True  # type: ignore[attr-defined]
    ctxvars._restore = restore


# --- the result cache -------------------------------------------------------------------------

def install_cache(cache: Cache) -> None:
    """Make `cache` LiteLLM's result cache, keyed on provider-specific sampling params too."""
    litellm.cache = cache
    litellm.enable_caching_on_provider_specific_optional_params = True  # min_p, num_predict, mirostat...


def make_cache(ttl: int, backend: RedisCache | None = None) -> Cache:
    """LiteLLM's `Cache`: in-memory, or over our own RedisCache instance (Cache(type="redis") would
    build its own unguarded client, so the backend is swapped in after construction)."""
    cache = Cache(type="local", ttl=ttl, default_in_memory_ttl=ttl)
    if backend is not None:
        cache.type, cache.cache = "redis", backend
    return cache


def trim_result_cache_overheads() -> None:
    """Per-request work of LiteLLM 1.110's result cache that gives the same result every time, done once:
    each cache read and write rebuilds `inspect.signature` of the called function to name its positional
    arguments, each write decision builds a pydantic `TypeAdapter` for the request's `cache` controls (which
    every gateway request carries: our tenant namespace), and a stream whose usage LiteLLM reports in a last
    chunk is finalized twice, storing the same complete answer twice. Installed once; idempotent."""
    from litellm.caching import caching_handler as ch

    if not getattr(ch.convert_args_to_kwargs, "carrot_memo", False):
        ch.convert_args_to_kwargs = _memo_convert_args_to_kwargs(ch.convert_args_to_kwargs)
    if not getattr(ch.TypeAdapter, "carrot_memo", False):
        ch.TypeAdapter = _memo_type_adapter(ch.TypeAdapter)
    if not getattr(ch.LLMCachingHandler.add_streaming_response_to_cache, "carrot_once", False):
        once = _store_stream_once(ch.LLMCachingHandler.add_streaming_response_to_cache)
        ch.LLMCachingHandler.add_streaming_response_to_cache = once
        ch.LLMCachingHandler._add_streaming_response_to_cache = once


def _memo_convert_args_to_kwargs(original_convert):
    """LiteLLM's `convert_args_to_kwargs` with each callable's parameter names read once."""
    @functools.lru_cache(maxsize=64)
    def param_names(fn) -> tuple[str, ...]:
        return tuple(inspect.signature(fn).parameters)

    @functools.wraps(original_convert)
    def convert_args_to_kwargs(original_function, args=None):
        try:
            names = param_names(original_function)
        except TypeError:  # unhashable callable: LiteLLM's own path
            return original_convert(original_function, args)
        return dict(zip(names, args or ()))

    convert_args_to_kwargs.carrot_memo = True  # type: ignore[attr-defined]
    return convert_args_to_kwargs


def _store_stream_once(original_add):
    """The caching handler's stream store, skipping a complete answer after the first one it was handed
    (per-chunk calls, if LiteLLM makes them again, all go through: the last one assembles the answer)."""
    @functools.wraps(original_add)
    async def add_streaming_response_once(self, processed_chunk) -> None:
        if isinstance(processed_chunk, ModelResponse | TextCompletionResponse):
            if getattr(self, "_carrot_stream_stored", False):
                return
            self._carrot_stream_stored = True
        await original_add(self, processed_chunk)

    add_streaming_response_once.carrot_once = True  # type: ignore[attr-defined]
    return add_streaming_response_once


def _memo_type_adapter(type_adapter):
    """`TypeAdapter(tp)` built once per (hashable) type; an adapter is immutable once built."""
    memo = functools.lru_cache(maxsize=32)(type_adapter)

    def adapter(*args, **kwargs):
        try:
            hash((args, *kwargs.items()))
        except TypeError:  # an unhashable argument: built each time (a build's own TypeError is not retried)
            return type_adapter(*args, **kwargs)
        return memo(*args, **kwargs)

    adapter.carrot_memo = True  # type: ignore[attr-defined]
    return adapter


async def redis_set(cache: RedisCache, key: str, value, /, *, op_timeout: float, **kwargs) -> None:
    """One SET with the cache's namespace and TTL (LiteLLM's own set swallows errors we must count).
    `kwargs` are the request's (LiteLLM passes them all: `timeout`, `cache`, `ttl`...)."""
    client = cache.init_async_client()
    async with asyncio.timeout(op_timeout):
        await client.set(name=cache.check_and_fix_namespace(key=key), value=json.dumps(value), ex=cache.get_ttl(**kwargs))


# --- where an error came from -------------------------------------------------------------------
# LiteLLM's own module layout (upstream.ERROR_MAP reads a cause's traceback by it: an answer that arrived but could
# not be read, not LiteLLM's router or proxy; test_reliability_upstream fails through the real proxy if it moves).
PROVIDER_RESPONSE_CODE = ("/litellm/llms/", "/litellm/litellm_core_utils/llm_response_utils/")
OLLAMA_CODE = ("/litellm/llms/ollama/",)  # its chunk parser: Ollama's mid-stream {"error": ...} line
TOOL_ARGUMENT_REPAIR = ("/prompt_templates/tool_call_json_repair.py",)  # the /v1/messages adapter's argument parse


# --- streams ----------------------------------------------------------------------------------

async def as_text_completion_stream(response: AsyncIterator, model: str, stream_options) -> AsyncIterator:
    """A FIM stream's chat-style chunks as text-completion chunks: LiteLLM 1.110 replays a cached FIM
    stream as chat chunks, whose `delta.content` a /v1/completions client never reads."""
    converter = TextCompletionStreamWrapper(completion_stream=None, model=model, stream_options=stream_options)
    async for chunk in response:
        chat_style = any(getattr(c, "delta", None) is not None for c in getattr(chunk, "choices", None) or ())
        yield converter.convert_to_text_completion_object(chunk) if chat_style else chunk


def finish_was_synthesized(request_data: dict) -> bool:
    """Did LiteLLM make up this text-completion finish because the upstream's stream ended without one?

    LiteLLM 1.110 raises for that on chat streams only; a FIM stream gets a made-up "stop". No public
    API says whether the upstream sent a finish: its stream wrapper is a local of the provider's
    streaming generator, which the call's logging object holds as `original_response`. A cache hit
    holds a dict (complete by construction). Raises LiteLLMContractError when that shape is gone.
    """
    details = getattr(request_data.get("litellm_logging_obj"), "model_call_details", None)
    if details is None:
        raise LiteLLMContractError("finish_was_synthesized: the request has no litellm_logging_obj.model_call_details")
    original = details.get("original_response")
    if original is None or isinstance(original, (dict, str)):
        return False
    frame = getattr(original, "ag_frame", None)
    if frame is None:
        raise LiteLLMContractError(f"finish_was_synthesized: original_response is a {type(original).__name__}, "
                                   "not a running async generator")
    wrappers = [v for v in frame.f_locals.values() if hasattr(v, "received_finish_reason")]
    if not wrappers:
        raise LiteLLMContractError("finish_was_synthesized: no stream wrapper with received_finish_reason "
                                   "among the streaming generator's locals")
    return any(w.received_finish_reason is None for w in wrappers)


async def report_failure(request_data: dict, exc: Exception) -> None:
    """Run LiteLLM's failure callbacks (metrics, request log) for an error raised inside a stream hook."""
    logging_obj = request_data.get("litellm_logging_obj")
    if logging_obj is not None:
        await logging_obj.async_failure_handler(exc, "")


async def post_call_failure(request_data: dict, exc: Exception, user_api_key_dict):
    """Run the proxy's post-call failure hooks (every callback's `async_post_call_failure_hook`: the request
    log's `request` line, metrics, rollouts) for an error a stream hook ends in the endpoint's own error
    event instead of raising it, as LiteLLM's stream generators do for what they catch (no public call),
    claiming the stream's one failure report as they do. Returns the error a hook made of it (the gateway's
    mapped one), else None."""
    from litellm.proxy import proxy_server

    claim = getattr(request_data.get("litellm_logging_obj"), "claim_stream_failure_report", None)
    if claim is not None and not claim():
        return None  # already reported (e.g. by the detached-stream handler)
    if getattr(proxy_server, "proxy_logging_obj", None) is None:
        raise LiteLLMContractError("post_call_failure: litellm.proxy.proxy_server has no proxy_logging_obj")
    return await proxy_server.proxy_logging_obj.post_call_failure_hook(
        request_data=request_data, original_exception=exc, user_api_key_dict=user_api_key_dict)


def client_asked_for_usage(request_data: dict) -> bool:
    """Whether the client asked for a stream's usage chunk: LiteLLM's proxy adds `include_usage` itself for its
    spend tracking (flagged in the request; it strips its own usage chunk before the client then)."""
    options = request_data.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True and not any(
        request_data.get(flag) for flag in (STREAM_USAGE_INJECTED_FIELD, "_litellm_strip_stream_usage"))


def usage_chunk(template, request_data: dict, completion_text: str):
    """The usage chunk of a stream the gateway ended early (LiteLLM's comes with the upstream's last chunk):
    `template`'s id, model and time, no choices; prompt tokens by LiteLLM's `token_counter` over what was sent
    (images at its default count: no fetch), completion tokens over what the model had generated by then (cl100k,
    LiteLLM's own fallback for models without a tokenizer here). Blocking: run it in a thread."""
    messages = request_data.get("messages")
    prompt = count_message_tokens(messages) if isinstance(messages, list) else count_tokens("".join(
        str(request_data.get(k) or "") for k in ("prompt", "suffix")))
    completion = count_tokens(completion_text)
    chunk = template.model_copy(deep=True)
    chunk.choices = []
    for extra in list(chunk.__pydantic_extra__ or ()):  # e.g. the verdict summary the last chunk carried
        delattr(chunk, extra)
    for field in ("system_fingerprint", "provider_specific_fields"):
        if getattr(chunk, field, None) is not None:
            setattr(chunk, field, None)
    chunk.usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    return chunk


# --- token counts -----------------------------------------------------------------------------

def count_message_tokens(messages: list, tools: list | None = None) -> int:
    """LiteLLM's local `token_counter` over chat or Anthropic messages (and tools), images at its default count
    (no fetch), offline tokenizer; a shape it does not know is counted as its JSON text. Blocking."""
    try:
        return litellm.token_counter(messages=messages, tools=tools, use_default_image_token_count=True)
    except Exception:  # noqa: BLE001 - a message shape the counter does not know: count its JSON text
        return count_tokens(json.dumps([messages, tools or []], default=str))


def serve_token_count(answer) -> None:
    """Answer POST /v1/messages/count_tokens with `answer(body, headers, key) -> dict` (headers lower-cased, the
    key LiteLLM's authentication found; run in a thread; a GatewayError is the client's error), in front of
    LiteLLM's route: that one hands the conversation to the provider's token-count endpoint with no callback,
    so no guardrail or egress redaction."""
    from fastapi import Depends
    from fastapi.routing import APIRoute
    from litellm.proxy import proxy_server
    from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

    from .errors import GatewayError

    async def count_tokens(request: Request, key: UserAPIKeyAuth = Depends(user_api_key_auth)) -> dict:  # noqa: B008 - FastAPI's idiom
        try:
            body = await request.json()
        except ValueError:
            raise GatewayError(400, "Request body must be a JSON object", param="body") from None
        headers = {k.lower(): v for k, v in request.headers.items()}
        return await asyncio.to_thread(answer, body, headers, key)

    routes = proxy_server.app.router.routes
    if not any(getattr(r, "endpoint", None) is not None and getattr(r.endpoint, "carrot_count", False)
               for r in routes):
        count_tokens.carrot_count = True  # type: ignore[attr-defined]
        routes.insert(0, APIRoute("/v1/messages/count_tokens", count_tokens, methods=["POST"]))


def local_token_counts_only() -> None:
    """LiteLLM's other token-count routes (`/utils/token_counter?call_endpoint=true`, `/v1/responses/input_tokens`,
    the Claude Code gateway's count_tokens) ask the provider's token-count endpoint through
    `proxy_server.count_request_tokens(call_endpoint=True)`, with no callback: the raw request reached an
    external upstream. Every count is made local (LiteLLM's own estimate). Idempotent; raises
    LiteLLMContractError when the function is gone (nothing may count through the provider unseen)."""
    from litellm.proxy import proxy_server

    original = getattr(proxy_server, "count_request_tokens", None)
    if original is None or "call_endpoint" not in inspect.signature(original).parameters:
        raise LiteLLMContractError("local_token_counts_only: litellm.proxy.proxy_server.count_request_tokens "
                                   "(call_endpoint=...) is gone")
    if getattr(original, "carrot_local", False):
        return

    @functools.wraps(original)
    async def count_request_tokens(*args, **kwargs):
        kwargs["call_endpoint"] = False
        return await original(*args, **kwargs)

    count_request_tokens.carrot_local = True  # type: ignore[attr-defined]
    proxy_server.count_request_tokens = count_request_tokens
