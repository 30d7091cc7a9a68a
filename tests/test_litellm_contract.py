"""Contract tests for `carrot_hooks/litellm_compat.py`: one per shim, each failing loudly (naming the
shim) when LiteLLM changes the behaviour we rely on. End-to-end proof of the same shims through the
real proxy lives in the e2e tests named in each docstring."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import litellm
import pytest
from litellm.exceptions import MidStreamFallbackError
from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
from litellm.types.utils import (
    Delta,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    TextCompletionResponse,
)
from starlette.requests import Request

from carrot_hooks import litellm_compat as compat
from carrot_hooks.gateway import GUARDRAILS, check_guardrail_order
from carrot_hooks.upstream import ERROR_MAP, StreamCut, as_gateway_error, cause_chain
from tests import services
from tests.proxy_process import ROOT


def test_installed_litellm_is_in_the_tested_range():
    assert compat.check_version(), f"litellm {litellm.__version__ if hasattr(litellm, '__version__') else ''} " \
        f"is outside {compat.TESTED}: re-run this file and widen TESTED only when it passes"


@pytest.fixture
def router(monkeypatch):
    from litellm.proxy import proxy_server

    r = litellm.Router(model_list=[
        {"model_name": "a", "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}},
        {"model_name": "b", "litellm_params": {"model": "openai/y", "api_base": "http://127.0.0.1:8/v1", "api_key": "k"}},
    ], fallbacks=[{"a": ["b"]}])
    monkeypatch.setattr(proxy_server, "llm_router", r)
    return r


def test_router_shims_read_aliases_deployments_and_fallbacks(router):
    assert compat.served_aliases() == {"a", "b"}
    assert [d["litellm_params"]["model"] for d in compat.deployments("a")] == ["openai/x"]
    assert compat.deployments("nope") == []
    assert compat.fallbacks("a") == ["b"] and compat.fallbacks("b") == []


def test_router_shims_without_a_router(monkeypatch):
    from litellm.proxy import proxy_server

    monkeypatch.setattr(proxy_server, "llm_router", None)
    assert compat.served_aliases() == frozenset() and compat.deployments("a") == [] and compat.fallbacks("a") == []


def test_proxy_admin_role_is_recognised():
    assert compat.is_proxy_admin(compat.UserAPIKeyAuth(user_role="proxy_admin"))
    assert not compat.is_proxy_admin(compat.UserAPIKeyAuth(api_key="sk-x", team_id="t"))


def test_proxy_globals_exist():
    from litellm.proxy import proxy_server

    assert hasattr(proxy_server, "master_key") and hasattr(proxy_server, "prisma_client")
    assert compat.db_connected() is (proxy_server.prisma_client is not None)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "query_string": b"",
             "root_path": ""}
    assert compat.request_route(Request(scope)) == "/v1/chat/completions"


def test_add_callback_registers_once():
    class Probe(litellm.integrations.custom_logger.CustomLogger):
        pass

    before = len(litellm.callbacks)
    compat.add_callback(Probe())
    compat.add_callback(Probe())
    try:
        assert len(litellm.callbacks) == before + 1
        assert isinstance(litellm.callbacks[-1], Probe)
    finally:
        litellm.callbacks[:] = [cb for cb in litellm.callbacks if not isinstance(cb, Probe)]


def test_litellm_params_are_the_keys_litellm_keeps_from_the_provider():
    """`LITELLM_PARAMS`: what is not in it (and not an OpenAI parameter) reaches the provider, so the guardrails
    read it (e2e: tests/test_guardrails_egress.py, the chat case and the policy test)."""
    assert {"litellm_call_id", "proxy_server_request", "metadata", "api_key", "secret_fields", "litellm_logging_obj",
            "guardrails", "tags", "mock_response",  # LiteLLM's own
            "timeout", "extra_headers", "drop_params", "organization", "thinking",  # client settings it maps
            "priority", "router_settings_override", "disable_fallbacks"} <= compat.LITELLM_PARAMS  # the proxy's
    assert not {"guided_json", "guided_regex", "documents", "chat_template_kwargs"} & compat.LITELLM_PARAMS


def test_post_call_failure_runs_every_callbacks_failure_hook():
    """`post_call_failure`: the proxy's failure hooks reach our callbacks (the request log's `request` line);
    end to end: tests/test_reliability_upstream.py::test_cut_agent_stream_ends_in_an_error_event_naming_the_upstream."""
    from litellm.proxy import proxy_server

    seen = []

    class Probe(litellm.integrations.custom_logger.CustomLogger):
        async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                               traceback_str=None):
            seen.append((request_data["marker"], original_exception))

    if proxy_server.proxy_logging_obj is None:
        pytest.fail("post_call_failure: litellm.proxy.proxy_server has no proxy_logging_obj")
    probe, error = Probe(), litellm.APIConnectionError(message="cut", llm_provider="openai", model="m")
    litellm.callbacks.append(probe)
    try:
        asyncio.run(compat.post_call_failure({"marker": "m-1"}, error, compat.UserAPIKeyAuth(api_key="sk-x")))
    finally:
        litellm.callbacks.remove(probe)
    assert seen == [("m-1", error)]


def test_cache_hit_finds_the_chat_stream_under_a_bridged_responses_stream():
    """`cache_hit` on a streamed Responses answer: the router's wrapper keeps its source as `_billing_source`, the
    bridge keeps the chat stream as `litellm_custom_stream_wrapper` (e2e: tests/test_agent_endpoints_e2e.py::
    test_a_cached_answer_says_hit_on_the_agent_endpoints[responses-stream])."""
    import inspect

    from litellm.responses.litellm_completion_transformation.streaming_iterator import (
        LiteLLMCompletionStreamingIterator,
    )
    from litellm.router_rust.invoke import streaming

    assert "self._billing_source: object = source_iterator" in inspect.getsource(streaming.wrap_responses_stream)
    assert "litellm_custom_stream_wrapper" in inspect.signature(LiteLLMCompletionStreamingIterator).parameters

    from types import SimpleNamespace

    chat = SimpleNamespace(_hidden_params={"cache_hit": True})
    wrapper = SimpleNamespace(_billing_source=SimpleNamespace(litellm_custom_stream_wrapper=chat),
                              _hidden_params={"cache_hit": None})
    assert compat.cache_hit(wrapper, {})


def test_cache_hit_reads_hidden_params_or_the_logging_object():
    response = ModelResponse()
    assert compat.cache_hit(response, {}) is False
    response._hidden_params["cache_hit"] = True
    assert compat.cache_hit(response, {}) is True
    logging_obj = litellm.litellm_core_utils.litellm_logging.Logging(
        model="m", messages=[], stream=False, call_type="acompletion", start_time=None, litellm_call_id="c",
        function_id="f")
    assert compat.cache_hit({"type": "message"}, {"litellm_logging_obj": logging_obj}) is False
    logging_obj.model_call_details["cache_hit"] = True  # what the caching handler records on a hit
    assert compat.cache_hit({"type": "message"}, {"litellm_logging_obj": logging_obj}) is True


def test_set_error_rewrites_what_the_completions_route_reads():
    exc = litellm.APIConnectionError(message="x", llm_provider="openai", model="m")
    compat.set_error(exc, 502, "named")
    assert (exc.status_code, exc.message) == (502, "named")


class _GoneVar:
    """A context variable whose value is already gone when LiteLLM restores it."""

    name = "carrot_contract_gone"

    def reset(self, token) -> None:
        raise LookupError(self)


def test_context_vars_restore_through_the_function_the_shim_replaces(monkeypatch):
    from litellm import _internal_context as ctxvars

    assert getattr(ctxvars._restore, "carrot_tolerant", False)  # the gateway (imported above) installed the shim
    litellms = ctxvars._restore.__wrapped__
    seen = []
    monkeypatch.setattr(ctxvars, "_restore", lambda var, token: (seen.append(var), litellms(var, token)))
    with ctxvars.service_target("carrot-contract"):
        assert ctxvars.current_service_target() == "carrot-contract"
    assert seen == [ctxvars._service_target] and ctxvars.current_service_target() is None
    # LiteLLM's own still lets a lost variable fail the request (when this fails, drop tolerate_lost_context_vars)
    with pytest.raises(LookupError):
        litellms(_GoneVar(), None)


def test_lost_context_var_is_skipped_with_one_warning_and_a_present_one_still_restored(monkeypatch, caplog):
    from litellm import _internal_context as ctxvars

    monkeypatch.setattr(ctxvars, "_restore", ctxvars._restore.__wrapped__)  # LiteLLM's own, put back afterwards
    compat.tolerate_lost_context_vars()
    shim = ctxvars._restore
    compat.tolerate_lost_context_vars()
    assert ctxvars._restore is shim and shim.carrot_tolerant  # installed once, not wrapped twice
    with caplog.at_level("WARNING", logger="carrot.litellm_compat"):
        shim(_GoneVar(), None)
        shim(_GoneVar(), None)
    assert [r.getMessage().count("carrot_contract_gone") for r in caplog.records] == [1]
    with ctxvars.service_target("outer"):
        with ctxvars.service_target("inner"):
            assert ctxvars.current_service_target() == "inner"
        assert ctxvars.current_service_target() == "outer"
    assert ctxvars.current_service_target() is None


def test_a_litellm_without_the_restore_function_still_starts(monkeypatch, caplog):
    from litellm import _internal_context as ctxvars

    monkeypatch.delattr(ctxvars, "_restore")
    with caplog.at_level("WARNING", logger="carrot.litellm_compat"):
        compat.tolerate_lost_context_vars()
    assert "not installed" in caplog.text and not hasattr(ctxvars, "_restore")


def test_cache_shims_round_trip_through_real_redis():
    url = services.redis_url()
    backend = compat.RedisCache(url=url)
    cache = compat.make_cache(60, backend)
    assert cache.type == "redis" and cache.cache is backend
    key = f"carrot-contract-{uuid.uuid4().hex}"

    async def go():
        # LiteLLM hands the request's kwargs on: `timeout`, the `cache` controls, `ttl`...
        await compat.redis_set(backend, key, {"v": 1}, op_timeout=2.0, ttl=60, timeout=120, cache={"no-cache": False})
        return await backend.async_get_cache(key)

    assert asyncio.run(go()) == {"v": 1}


def test_result_cache_names_positional_arguments_without_rebuilding_the_signature(monkeypatch):
    """trim_result_cache_overheads: LiteLLM's cache reads and writes still name positional arguments through
    the module's `convert_args_to_kwargs`, and the memoized one maps them as LiteLLM's own does."""
    import inspect

    from litellm.caching import caching_handler as ch

    assert getattr(ch.convert_args_to_kwargs, "carrot_memo", False)  # the gateway (imported above) installed it
    handler = ch.LLMCachingHandler
    for method in (handler._retrieve_from_cache, handler.async_set_cache, handler.sync_get_cache, handler.sync_set_cache):
        assert "convert_args_to_kwargs" in method.__code__.co_names, method.__name__
    litellms = ch.convert_args_to_kwargs.__wrapped__

    def called(model, messages, *, stream=False):
        return model, messages, stream

    for fn, args in ((litellm.acompletion, ("m", [{"role": "user", "content": "x"}])), (called, ("m", [], 3)),
                     (called, None), (litellm.atext_completion, ("p",))):
        assert ch.convert_args_to_kwargs(fn, args) == litellms(fn, args)
    seen, signature = [], inspect.signature

    def counted(fn):
        seen.append(fn)
        return signature(fn)

    def fresh(a, b):  # a function the memo has not seen
        return a, b

    monkeypatch.setattr(inspect, "signature", counted)
    assert ch.convert_args_to_kwargs(fresh, (1, 2)) == {"a": 1, "b": 2}
    assert ch.convert_args_to_kwargs(fresh, (3, 4)) == {"a": 3, "b": 4}
    assert seen == [fresh]


def test_result_cache_builds_its_cache_controls_adapter_once():
    """trim_result_cache_overheads: the store decision still validates the request's `cache` controls with the
    module's `TypeAdapter`, now built once per type, and still honours `no-store`."""
    import datetime
    from collections.abc import Mapping

    from litellm.caching import caching_handler as ch

    assert getattr(ch.TypeAdapter, "carrot_memo", False)
    assert "TypeAdapter" in ch.LLMCachingHandler.should_store_result_in_cache.__code__.co_names
    assert ch.TypeAdapter(Mapping[str, object]) is ch.TypeAdapter(Mapping[str, object])
    assert ch.TypeAdapter(Mapping[str, object]).validate_python({"namespace": "n"}) == {"namespace": "n"}
    handler = ch.LLMCachingHandler(litellm.acompletion, {}, datetime.datetime.now())
    store = handler.should_store_result_in_cache
    assert store(litellm.acompletion, {"model": "m", "cache": {"namespace": "n"}}) is (litellm.cache is not None)
    assert store(litellm.acompletion, {"model": "m", "cache": {"namespace": "n", "no-store": True}}) is False


def test_type_adapter_memo_builds_once_and_does_not_retry_a_failing_build():
    """trim_result_cache_overheads: a type whose adapter cannot be built fails once (not built twice), an
    unhashable argument is built each time, and a hashable one once."""
    from carrot_hooks.litellm_compat import _memo_type_adapter

    calls = []

    def build(tp, config=None):
        calls.append(tp)
        if tp == "bad":
            raise TypeError("cannot build")
        return object()

    adapter = _memo_type_adapter(build)
    with pytest.raises(TypeError, match="cannot build"):
        adapter("bad")
    assert calls == ["bad"]
    assert adapter(int) is adapter(int) and calls.count(int) == 1
    assert adapter(int, config={"strict": True}) is not adapter(int, config={"strict": True})
    assert calls.count(int) == 3


def _stream_through_litellm(include_usage: bool) -> tuple[list, list]:
    """A two-token stream through LiteLLM's own `CustomStreamWrapper` and caching handler (the store decision
    forced on): the answers LiteLLM hands the handler, and the ones the handler stores."""
    import datetime

    from litellm.caching import caching_handler as ch
    from litellm.litellm_core_utils.litellm_logging import Logging
    from litellm.types.utils import Usage

    handler = ch.LLMCachingHandler(litellm.acompletion, {"model": "m", "messages": []}, datetime.datetime.now())
    handed, stored = [], []
    handler.should_store_result_in_cache = lambda **kw: True

    async def record(result, original_function, kwargs, args=None):
        stored.append(result)

    async def hand(processed_chunk):
        handed.append(processed_chunk)
        await ch.LLMCachingHandler.add_streaming_response_to_cache(handler, processed_chunk)

    handler.async_set_cache, handler.add_streaming_response_to_cache = record, hand
    last = ModelResponseStream(id="s", created=1, model="m",
                               choices=[StreamingChoices(index=0, delta=Delta(), finish_reason="stop")])
    last.usage = Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    chunks = [ModelResponseStream(id="s", created=1, model="m",
                                  choices=[StreamingChoices(index=0, delta=Delta(content=t, role="assistant"))])
              for t in ("hel", "lo")] + [last]

    async def upstream():
        for chunk in chunks:
            yield chunk

    async def go():
        logging_obj = Logging(model="m", messages=[], stream=True, call_type="acompletion",
                              start_time=datetime.datetime.now(), litellm_call_id=uuid.uuid4().hex, function_id="f")
        logging_obj.llm_caching_handler = handler
        wrapper = CustomStreamWrapper(completion_stream=upstream(), model="m", logging_obj=logging_obj,
                                      custom_llm_provider="openai",
                                      stream_options={"include_usage": True} if include_usage else None)
        assert "".join(c.choices[0].delta.content or "" for c in [c async for c in wrapper] if c.choices) == "hello"
        # LiteLLM caches (and logs) from tasks it spawns at the end of the stream: wait for them all
        while pending := asyncio.all_tasks() - {asyncio.current_task()}:
            await asyncio.gather(*pending, return_exceptions=True)

    asyncio.run(go())
    return handed, stored


@pytest.mark.parametrize("include_usage, answers", [(True, 2), (False, 1)])
def test_litellm_hands_a_stream_its_complete_answer_once_or_twice(include_usage, answers):
    """trim_result_cache_overheads: LiteLLM 1.110 hands the caching handler the complete answer of a stream
    (not its chunks), twice when the stream reports usage, once otherwise. If this fails, LiteLLM changed
    how it caches streams: the stream-once patch may be dead (no more double hand-over) or must be revisited
    (per-chunk hand-over): re-check it and test_ops_cache's one-write check before widening TESTED."""
    handed, _ = _stream_through_litellm(include_usage)
    assert [type(a) for a in handed] == [ModelResponse] * answers, \
        f"LiteLLM now hands {[type(a).__name__ for a in handed]} to the stream cache: revisit trim_result_cache_overheads"
    assert {a.model_dump_json() for a in handed} == {handed[0].model_dump_json()}, "the hand-overs differ"
    assert handed[0].choices[0].message.content == "hello" and handed[0].usage.total_tokens == 5


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_answer_is_stored_once_per_request(include_usage, monkeypatch):
    """trim_result_cache_overheads: the handler stores a stream's complete answer once however often LiteLLM
    hands it over, also after a second install, even one that finds another of its patches undone (e2e:
    test_ops_cache's one-write check)."""
    from litellm.caching import caching_handler as ch

    patched = ch.LLMCachingHandler.add_streaming_response_to_cache
    monkeypatch.setattr(ch, "convert_args_to_kwargs", ch.convert_args_to_kwargs.__wrapped__)
    compat.trim_result_cache_overheads()
    assert getattr(ch.convert_args_to_kwargs, "carrot_memo", False)
    assert ch.LLMCachingHandler.add_streaming_response_to_cache is patched, "a second install wrapped it again"
    _, stored = _stream_through_litellm(include_usage)
    assert len(stored) == 1 and stored[0].choices[0].message.content == "hello"


def test_stream_chunks_handed_one_by_one_are_still_stored():
    """trim_result_cache_overheads: were LiteLLM to hand the handler a stream chunk by chunk again (as its
    docstring still describes), the chunks pass the stream-once patch and the last one stores the answer."""
    import datetime

    from litellm.caching import caching_handler as ch

    handler = ch.LLMCachingHandler(litellm.acompletion, {"model": "m", "messages": []}, datetime.datetime.now())
    handler.should_store_result_in_cache = lambda **kw: True
    stored = []

    async def record(result, original_function, kwargs, args=None):
        stored.append(result)

    handler.async_set_cache = record
    chunks = [ModelResponseStream(id="s", created=1, model="m", choices=[StreamingChoices(
        index=0, delta=Delta(content=t, role="assistant"), finish_reason=f)]) for t, f in (("hel", None), ("lo", "stop"))]

    async def go():
        for chunk in chunks:
            await handler.add_streaming_response_to_cache(chunk)

    asyncio.run(go())
    assert [s.choices[0].message.content for s in stored] == ["hello"]


def test_install_cache_sets_litellm_cache(monkeypatch):
    monkeypatch.setattr(litellm, "cache", None)
    monkeypatch.setattr(litellm, "enable_caching_on_provider_specific_optional_params", False)
    cache = compat.make_cache(60)
    compat.install_cache(cache)
    assert litellm.cache is cache and litellm.enable_caching_on_provider_specific_optional_params is True


def test_text_stream_converter_turns_chat_chunks_into_text_chunks():
    """E2E: test_ops_cache's streamed FIM cache replay."""
    chunk = ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content="abc"))])

    async def source():
        yield chunk

    async def go():
        return [c async for c in compat.as_text_completion_stream(source(), "m", None)]

    (out,) = asyncio.run(go())
    assert out.choices[0].text == "abc"


def test_litellm_stream_wrapper_still_tracks_received_finish_reason():
    """The FIM cut probe reads `received_finish_reason` off LiteLLM's stream wrapper
    (e2e: test_reliability_upstream's clean-cut FIM cases)."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    logging_obj = Logging(model="m", messages=[], stream=True, call_type="completion", start_time=None,
                          litellm_call_id="c", function_id="f")
    wrapper = CustomStreamWrapper(completion_stream=None, model="m", logging_obj=logging_obj,
                                  custom_llm_provider="openai")
    assert hasattr(wrapper, "received_finish_reason") and wrapper.received_finish_reason is None


def test_finish_probe_raises_when_the_shape_is_gone():
    class Logging:
        def __init__(self, original):
            self.model_call_details = {"original_response": original}

    assert compat.finish_was_synthesized({"litellm_logging_obj": Logging(None)}) is False
    assert compat.finish_was_synthesized({"litellm_logging_obj": Logging({"cached": True})}) is False

    async def no_wrapper():
        yield 1

    gen = no_wrapper()
    asyncio.run(gen.__anext__())  # suspended inside: a frame with no stream wrapper among its locals
    with pytest.raises(compat.LiteLLMContractError, match="received_finish_reason"):
        compat.finish_was_synthesized({"litellm_logging_obj": Logging(gen)})
    with pytest.raises(compat.LiteLLMContractError, match="litellm_logging_obj"):
        compat.finish_was_synthesized({})


def test_logging_object_has_the_failure_handler_we_call():
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert callable(getattr(Logging, "async_failure_handler", None))


def test_litellm_raises_a_clean_stream_cut_as_a_remote_protocol_error():
    """ERROR_MAP's `upstream_cut` row keys on this cause type, not on LiteLLM's message text."""
    assert isinstance(CustomStreamWrapper._stream_eof_error(), httpx.RemoteProtocolError)


def test_a_clean_chat_stream_eof_maps_to_upstream_cut():
    """LiteLLM hands a chat stream's clean EOF to its mapping unraised: the client sees an
    APIConnectionError whose cause is a MidStreamFallbackError (e2e: test_reliability_upstream's
    cut-stream cases assert the 'broke off mid-stream' message)."""
    try:
        try:
            raise MidStreamFallbackError(message="Stream ended before a finish_reason was received",
                                                 model="m", llm_provider="openai")
        except MidStreamFallbackError as inner:
            raise litellm.APIConnectionError(message="x", model="m", llm_provider="openai") from inner
    except litellm.APIConnectionError as exc:
        assert as_gateway_error(exc, "a").detail["error"]["type"] == "upstream_cut"


PROVIDER = "/site-packages/litellm/llms/ollama/chat/transformation.py"
REPAIR = "/site-packages/litellm/litellm_core_utils/prompt_templates/tool_call_json_repair.py"
ROUTER = "/site-packages/litellm/router.py"


def caused(exc: Exception, cause: Exception, where: str = PROVIDER) -> Exception:
    """`exc` raised from `cause`, as LiteLLM wraps what its code met; `cause` raised in a module at `where`."""
    try:
        exec(compile("raise cause", where, "exec"), {"cause": cause})  # noqa: S102 - a frame in that module
    except Exception as raised:  # noqa: BLE001 - kept as the cause, with its traceback through `where`
        exc.__cause__ = raised
    return exc


@pytest.mark.parametrize("exc, status, code", [
    (litellm.Timeout(message="t", model="m", llm_provider="openai"), 504, "upstream_timeout"),
    (litellm.ServiceUnavailableError(message="s", model="m", llm_provider="openai"), 503, "upstream_unavailable"),
    (StreamCut("m"), 502, "upstream_cut"),
    (litellm.APIConnectionError(message="c", model="m", llm_provider="openai"), 502, "upstream_error"),
    (caused(litellm.APIConnectionError(message="c", model="m", llm_provider="openai"), httpx.ConnectError("x")),
     502, "upstream_unreachable"),
    (caused(litellm.APIConnectionError(message="c", model="m", llm_provider="openai"), json.JSONDecodeError("x", "", 0)),
     502, "upstream_invalid_response"),
    (caused(litellm.APIConnectionError(message="c", model="m", llm_provider="openai"), TypeError("x")),
     502, "upstream_invalid_response"),
    (caused(litellm.APIError(500, message="e", model="m", llm_provider="openai"), json.JSONDecodeError("x", "", 0)),
     502, "upstream_invalid_response"),
    (litellm.APIError(500, message="e", model="m", llm_provider="openai"), 502, "upstream_error"),
    (caused(litellm.BadRequestError(message="b", model="m", llm_provider="ollama_chat"), KeyError("message")),
     502, "upstream_error"),
    (caused(ValueError("Failed to parse tool call arguments"), json.JSONDecodeError("x", "", 0), REPAIR),
     502, "upstream_invalid_response"),
    # the same causes met outside LiteLLM's provider code (its router, proxy, our hooks) say nothing about an answer
    (caused(litellm.APIConnectionError(message="c", model="m", llm_provider="openai"), TypeError("x"), ROUTER),
     502, "upstream_error"),
    (caused(litellm.BadRequestError(message="b", model="m", llm_provider="openai"), KeyError("k"), ROUTER), None, None),
    (caused(ValueError("x"), json.JSONDecodeError("x", "", 0), ROUTER), None, None),
    (ValueError("x"), None, None),
    (litellm.InternalServerError(message="i", model="m", llm_provider="openai"), 502, "upstream_error"),
    (litellm.NotFoundError(message="n", model="m", llm_provider="openai"), 502, "upstream_error"),
    (litellm.RateLimitError(message="r", model="m", llm_provider="openai"), 429, "rate_limited"),
    (litellm.AuthenticationError(message="a", model="m", llm_provider="openai"), 502, "upstream_auth"),
    (litellm.PermissionDeniedError(message="p", model="m", llm_provider="openai",
                                   response=httpx.Response(403, request=httpx.Request("POST", "http://u"))),
     502, "upstream_auth"),
    (litellm.BadRequestError(message="b", model="m", llm_provider="openai"), None, None),
])
def test_error_map_rows(exc, status, code):
    """One case per row (a transport error, a decoding error or a chunk LiteLLM could not read in the chain)."""
    mapped = as_gateway_error(exc, "ds-coder-v2")
    assert (mapped.status_code if mapped else None, mapped.detail["error"]["type"] if mapped else None) == (status, code)


def test_error_map_reads_the_cause_chain_not_the_text():
    try:
        try:
            raise httpx.RemoteProtocolError("whatever words LiteLLM picks")
        except httpx.RemoteProtocolError as inner:
            raise litellm.APIConnectionError(message="different words", model="m", llm_provider="openai") from inner
    except litellm.APIConnectionError as exc:
        assert any(isinstance(e, httpx.RemoteProtocolError) for e in cause_chain(exc))
        assert as_gateway_error(exc, "a").detail["error"]["type"] == "upstream_cut"
    assert {row.code for row in ERROR_MAP} >= {"upstream_timeout", "upstream_cut", "upstream_unreachable"}


@pytest.mark.parametrize("config", ["litellm_config.yaml", "deploy/k8s/config.yaml"])
def test_configs_list_the_guardrails_in_pipeline_order(config, tmp_path):
    path = ROOT / config
    if config.startswith("deploy"):  # the k8s ConfigMap embeds the proxy config as a string
        import yaml

        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        embedded = next(v for d in docs for v in (d.get("data") or {}).values() if "guardrails:" in v)
        path = tmp_path / "config.yaml"
        path.write_text(embedded)
    assert check_guardrail_order(path) == []
    assert [g[0] for g in GUARDRAILS] == ["carrot-prompt-policy", "carrot-pii", "carrot-output"]


def test_fallback_group_names_the_group_of_a_fallback_attempt(monkeypatch):
    """e2e: tests/test_agent_endpoints_e2e.py::test_a_fallback_is_reported_as_such (every endpoint)"""
    from litellm.integrations.custom_logger import CustomLogger

    seen = []

    class Probe(CustomLogger):
        async def async_pre_call_deployment_hook(self, kwargs, call_type):
            seen.append(compat.fallback_group(kwargs))
            return kwargs

    monkeypatch.setattr(litellm, "callbacks", [Probe()])
    r = litellm.Router(model_list=[
        {"model_name": "a", "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "api_key": "k"}},
        {"model_name": "b", "litellm_params": {"model": "openai/y", "api_key": "k", "mock_response": "hi"}},
    ], fallbacks=[{"a": ["b"]}], num_retries=0)
    asyncio.run(r.acompletion(model="a", messages=[{"role": "user", "content": "x"}]))
    asyncio.run(r.acompletion(model="b", messages=[{"role": "user", "content": "x"}]))
    assert seen == [None, "b", None], f"fallback_group: the router's attempt metadata changed: {seen}"
    # LiteLLM's own metadata wins over a client's `metadata` (/v1/messages); a silent shadow call is no answer
    assert compat.fallback_group({"metadata": {"model_group": "a"},
                                  "litellm_metadata": {"model_group": "b", "original_model_group": "a"}}) == "b"
    assert compat.fallback_group({"metadata": {"model_group": "b", "original_model_group": "a",
                                               "is_silent_experiment": True}}) is None


def test_http_edge_goes_in_front_of_the_proxy_app_before_and_after_it_starts(monkeypatch):
    """e2e: tests/test_http_edge.py"""
    from litellm.proxy import proxy_server
    from starlette.applications import Starlette

    from carrot_hooks.http_edge import HttpEdge

    app = Starlette()
    monkeypatch.setattr(proxy_server, "app", app)
    compat.install_http_edge(frozenset, lambda: 1 << 21)
    assert any(m.cls is HttpEdge for m in app.user_middleware)  # not started: a regular middleware
    started = Starlette()
    started.middleware_stack = started.build_middleware_stack()
    monkeypatch.setattr(proxy_server, "app", started)
    compat.install_http_edge(frozenset, lambda: 1 << 21)
    compat.install_http_edge(frozenset, lambda: 1 << 21)
    assert isinstance(started.middleware_stack, HttpEdge) and not isinstance(started.middleware_stack.app, HttpEdge)


def test_count_tokens_uses_the_cl100k_encoding_litellm_ships_offline(monkeypatch):
    """compat.count_tokens (litellm_bundle): LiteLLM's bundled cl100k (no download; routing by size depends
    on it), found in the wheel without importing LiteLLM: the folder LiteLLM's own import points tiktoken at."""
    from litellm.litellm_core_utils import default_encoding

    from carrot_hooks import litellm_bundle

    monkeypatch.delenv("CUSTOM_TIKTOKEN_CACHE_DIR", raising=False)
    assert default_encoding.encoding.name == "cl100k_base"
    assert litellm_bundle.cl100k_file().parent == Path(default_encoding.filename)
    assert compat.count_tokens("def add(a, b):\n    return a + b") == 11
    assert compat.count_tokens("<|endoftext|>") > 1, "special tokens are counted as text, not refused"


def test_a_cache_folder_without_the_file_is_an_import_error_not_a_download(monkeypatch, tmp_path):
    """CUSTOM_TIKTOKEN_CACHE_DIR (LiteLLM's override) without the cl100k file: tiktoken would fetch it."""
    from carrot_hooks import litellm_bundle

    monkeypatch.setenv("CUSTOM_TIKTOKEN_CACHE_DIR", str(tmp_path))
    with pytest.raises(ImportError, match="tiktoken would download it"):
        litellm_bundle.cl100k_file()


def test_token_count_loads_without_importing_litellm(tmp_path):
    """`carrot-review` sizes diffs with the bundle's counter: a fresh interpreter counts offline (an empty
    tiktoken cache, and `requests`, tiktoken's only way to download, made unimportable) and never imports
    LiteLLM (~5 s)."""
    probe = ("import sys; sys.modules['requests'] = None; from carrot_hooks.litellm_bundle import count_tokens; "
             "print(count_tokens('def add(a, b):\\n    return a + b'), 'litellm' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if "TIKTOKEN" not in k}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False,
                         cwd=ROOT, env={**env, "TMPDIR": str(tmp_path)})
    assert out.stdout.split() == ["11", "False"], out.stderr


def test_the_imports_litellm_auth_runs_per_request_resolve():
    """pyproject's opentelemetry-sdk: LiteLLM's auth imports its OTel fan-out inside every request and
    swallows a failure, so a missing module costs a sys.path scan per request without any error."""
    import importlib
    import inspect
    import re

    from litellm.proxy.auth import user_api_key_auth as auth

    source = inspect.getsource(auth._seed_request_destinations)
    modules = re.findall(r"^\s*from (litellm\.[\w.]+) import", source, re.MULTILINE)
    assert modules, "LiteLLM no longer imports inside _seed_request_destinations: drop opentelemetry-sdk if unused"
    for module in modules:
        importlib.import_module(module)  # ModuleNotFoundError names the missing dependency


def test_the_proxy_runs_with_the_gc_threshold_its_environment_sets(proxy):
    """`PYTHON_GC_THRESHOLD` (carrot_hooks/serve.py DEFAULTS, the Dockerfile) is LiteLLM's own setting, applied
    when its proxy module loads; the running proxy reports the thresholds in force."""
    from carrot_hooks.serve import DEFAULTS

    r = httpx.get(f"{proxy.base_url}/debug/memory/details", params={"top_n": 1}, headers=proxy.headers(), timeout=60)
    assert r.status_code == 200, r.text[:500]
    thresholds = r.json()["garbage_collector"]["thresholds"]
    want = [int(x) for x in DEFAULTS["PYTHON_GC_THRESHOLD"].split(",")]
    assert [thresholds[f"generation_{g}"] for g in range(3)] == want, thresholds


def test_user_content_types_are_the_ones_litellm_accepts():
    """The gateway answers 400 for a user part type LiteLLM would refuse after routing (as a 5xx)."""
    from litellm.utils import validate_chat_completion_user_messages

    for kind in compat.USER_CONTENT_TYPES:
        validate_chat_completion_user_messages([{"role": "user", "content": [{"type": kind, "text": "x"}]}])
    with pytest.raises(Exception, match="Invalid user message"):
        validate_chat_completion_user_messages([{"role": "user", "content": [{"type": "weird", "text": "x"}]}])



def test_usage_chunk_of_a_stream_ended_early_serialises_as_litellm_s_own():
    """`compat.usage_chunk`: LiteLLM's token counter still counts a chat request's messages, and a chunk of either
    stream type with no choices and a `Usage` serialises with the usage the OpenAI SDK reads, without the
    template's extra fields (the verdict summary goes out once, on the answer's last chunk)."""
    chat = ModelResponseStream(id="s", created=1, model="m", choices=[StreamingChoices(
        index=0, delta=Delta(content="abc"), finish_reason="content_filter")])
    fim = TextCompletionResponse(id="t", created=1, model="m", choices=[{"index": 0, "text": "", "finish_reason":
                                                                          "content_filter"}])
    for template in (chat, fim):
        template.carrot_guardrails = "commands:block"
    chunks = [compat.usage_chunk(chat, {"messages": [{"role": "user", "content": "count these five words please"}]},
                                 "rm -rf / now"),
              compat.usage_chunk(fim, {"prompt": "def add(a, b):\n", "suffix": "\n"}, "return a + b")]
    for chunk, template in zip(chunks, (chat, fim), strict=True):
        body = chunk.model_dump()
        assert body["choices"] == [] and body["id"] == template.id and "carrot_guardrails" not in body, body
        usage = body["usage"]
        assert usage["prompt_tokens"] > 3 and usage["completion_tokens"] > 2, usage
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert template.choices and template.carrot_guardrails  # the template is left as it was


def test_litellm_flags_the_usage_it_asks_for_itself():
    """`compat.client_asked_for_usage`: the proxy adds include_usage to a stream the client sent without it (for its
    spend tracking) and flags that; a client's own include_usage is left unflagged."""
    from litellm.proxy.common_request_processing import stream_usage_tracking_updates

    def sent(body: dict) -> dict:
        return {**body, **stream_usage_tracking_updates(body, {}, "acompletion", lambda: True)}

    injected = sent({"stream": True})
    assert injected["stream_options"] == {"include_usage": True} and not compat.client_asked_for_usage(injected)
    assert compat.client_asked_for_usage(sent({"stream": True, "stream_options": {"include_usage": True}}))
    assert not compat.client_asked_for_usage(sent({"stream": True, "stream_options": {"include_usage": False}}))


def test_every_proxy_token_count_is_made_local(monkeypatch):
    """compat.local_token_counts_only: LiteLLM's count routes reach the provider through
    `proxy_server.count_request_tokens(call_endpoint=True)`; the shim forces False (idempotent), and a LiteLLM
    without that function fails start-up by name rather than counting through the provider unseen."""
    from litellm.proxy import proxy_server

    seen: list[bool] = []

    async def count_request_tokens(request, call_endpoint: bool = False, **kw):
        seen.append(call_endpoint)

    monkeypatch.setattr(proxy_server, "count_request_tokens", count_request_tokens)
    compat.local_token_counts_only()
    compat.local_token_counts_only()
    asyncio.run(proxy_server.count_request_tokens(request=None, call_endpoint=True))
    assert seen == [False]
    monkeypatch.delattr(proxy_server, "count_request_tokens")
    with pytest.raises(compat.LiteLLMContractError, match="local_token_counts_only"):
        compat.local_token_counts_only()


def test_litellm_counts_for_ollama_only_what_the_gateway_lets_through_there():
    """`compat.CARRIED`: LiteLLM counts an Ollama prompt's tokens once Ollama has answered and fails (a 5xx after
    the work is done) on the part and call types the gateway answers 400 for on that route; the rest are counted."""
    parts, calls = compat.CARRIED["ollama_chat"]
    examples = {"text": {"text": "x"}, "image_url": {"image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                "refusal": {"refusal": "no"}, "input_audio": {"input_audio": {"data": "AAAA", "format": "wav"}},
                "document": {"source": {}}}
    for kind, payload in examples.items():
        messages = [{"role": "user", "content": [{"type": kind, **payload}]}]
        if kind in parts:
            litellm.token_counter(messages=messages, use_default_image_token_count=True)
        else:
            with pytest.raises(Exception):  # noqa: B017 - LiteLLM raises several types here
                litellm.token_counter(messages=messages, use_default_image_token_count=True)
    for kind, call in (("function", {"function": {"name": "f", "arguments": "{}"}}),
                       ("custom", {"custom": {"name": "f", "input": "x"}})):
        messages = [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": kind, **call}]}]
        if kind in calls:
            litellm.token_counter(messages=messages)
        else:
            with pytest.raises(ValueError, match="must contain a function key"):
                litellm.token_counter(messages=messages)
