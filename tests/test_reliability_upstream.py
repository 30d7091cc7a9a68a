"""Upstream faults through the real proxy: refused connections, 500/503, slow past the timeout,
a stream cut half-way. The YAML fallback serves where one is configured (ds-coder-v2 → vLLM);
otherwise the client gets a clear 502/503/504 naming the upstream, and a cut stream ends in an
error event, never in a silently truncated success."""

from __future__ import annotations

import dataclasses
import json

import httpx
import openai
import pytest

from tests.conftest import DEAD, make_client
from tests.fake_upstream import Reply, planted_secret
from tests.services import wait_for

V2 = "deepseek-coder-v2:16b-lite-instruct-q4_K_M"
VLLM = "deepseek-ai/DeepSeek-Coder-V2-Instruct"


def ask(p, marker, task, stream=False, timeout=60.0):
    """POST a chat request; returns the httpx response (streams read to the end)."""
    body = {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": f"question {marker}"}]}
    headers = {**p.headers(), "X-Task-Type": task}
    with httpx.stream("POST", f"{p.base_url}/v1/chat/completions", json=body, headers=headers,
                      timeout=timeout) as r:
        r.read()
    return r


@pytest.fixture(scope="module")
def ollama_down(unreachable_proxies):
    """A gateway whose Ollama refuses connections while vLLM (the fallback) answers."""
    return unreachable_proxies["ollama"]


@pytest.fixture(scope="module")
def impatient(chaos):
    """A gateway that gives upstreams 2 s (the shared fault-test proxy)."""
    return chaos


# --- refused connections ---

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_refused_with_fallback_serves_from_vllm(ollama_down, fake_upstream, marker, stream):
    r = ask(ollama_down, marker, "chat", stream=stream)
    assert r.status_code == 200, r.text
    assert "Hello from" in r.text or "Hello" in r.text
    reqs = fake_upstream.find(marker)
    assert [(q.path, q.json["model"]) for q in reqs] == [("/v1/chat/completions", VLLM)]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_refused_without_fallback_is_502_naming_upstream(ollama_down, fake_upstream, marker, stream):
    r = ask(ollama_down, marker, "editor", stream=stream)
    assert r.status_code == 502, r.text
    msg = r.json()["error"]["message"]
    assert DEAD in msg and "ds-coder-6.7b" in msg
    assert fake_upstream.find(marker) == []


# --- 500 / 503 answers ---

@pytest.mark.parametrize("status", [500, 503])
def test_upstream_error_with_fallback_serves_from_vllm(proxy, fake_upstream, marker, status):
    fake_upstream.script(Reply(status=status, match=marker))
    r = ask(proxy, marker, "refactor")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert [(q.path, q.json["model"]) for q in fake_upstream.find(marker)] == [
        ("/api/chat", V2), ("/v1/chat/completions", VLLM)]
    call = r.headers["x-litellm-call-id"]

    def logged():
        lines = (json.loads(ln) for ln in proxy.log().splitlines() if f'"call_id": "{call}"' in ln)
        return sorted((rec["event"], rec["status"]) for rec in lines)

    wait_for(lambda: len(logged()) >= 2)  # success/failure callbacks run after the response
    assert logged() == [("request", "ok"), ("upstream_attempt", "error")]  # one request line, not two


@pytest.mark.parametrize("status,expect", [(500, 502), (503, 503), (401, 502), (403, 502)])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_error_without_fallback_is_clear(proxy, fake_upstream, marker, status, expect, stream):
    fake_upstream.script(Reply(status=status, match=marker))
    r = ask(proxy, marker, "editor", stream=stream)
    assert r.status_code == expect, r.text
    msg = r.json()["error"]["message"]
    assert fake_upstream.url in msg and "ds-coder-6.7b" in msg
    assert len(fake_upstream.find(marker)) == 1


def test_both_upstreams_failing_names_both(proxy, fake_upstream, marker):
    fake_upstream.script(Reply(status=503, match=marker, times=2))
    r = ask(proxy, marker, "chat")
    assert r.status_code in (502, 503), r.text
    assert f"{fake_upstream.url}, {fake_upstream.url}/v1" in r.json()["error"]["message"]  # Ollama, then vLLM
    assert len(fake_upstream.find(marker)) == 2


# --- slow past the timeout ---

@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_slow_without_fallback_is_504(impatient, fake_upstream, marker, stream):
    fake_upstream.script(Reply(delay=6, match=marker))
    r = ask(impatient, marker, "editor", stream=stream, timeout=30)
    assert r.status_code == 504, r.text
    msg = r.json()["error"]["message"]
    assert "timed out" in msg and fake_upstream.url in msg


def test_slow_with_fallback_serves_from_vllm(impatient, fake_upstream, marker):
    fake_upstream.script(Reply(delay=6, match=marker))
    r = ask(impatient, marker, "chat", timeout=30)
    assert r.status_code == 200, r.text
    assert [q.path for q in fake_upstream.find(marker)] == ["/api/chat", "/v1/chat/completions"]


# --- a stream cut half-way ---

def sse_events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def assert_cut_reported(r: httpx.Response, upstream: str) -> None:
    """A cut stream is reported: as an HTTP 502 naming the upstream when nothing had reached the client
    yet (e.g. all still in the output guardrail's holdback), else as an SSE error event; never a finish."""
    if r.status_code != 200:
        message = r.json()["error"]["message"]
        assert r.status_code == 502 and upstream in message and "broke off mid-stream" in message, r.text
        return
    events = [json.loads(e) for e in sse_events(r.text) if e != "[DONE]"]
    assert events and "error" in events[-1], events[-3:]
    assert upstream in events[-1]["error"]["message"]
    assert "broke off mid-stream" in events[-1]["error"]["message"], events[-1]
    assert not any((e.get("choices") or [{}])[0].get("finish_reason") for e in events), events


@pytest.mark.parametrize("task", ["editor", "chat"])
@pytest.mark.parametrize("cut_after", [2, 30], ids=["early", "late"])
def test_cut_stream_is_reported(proxy, fake_upstream, marker, task, cut_after):
    fake_upstream.script(Reply(content="x" * 400, chunk_chars=8, cut_after=cut_after, match=marker))
    assert_cut_reported(ask(proxy, marker, task, stream=True), fake_upstream.url)
    assert_not_cached(proxy, fake_upstream, marker, task)


def assert_not_cached(proxy, fake_upstream, marker, task) -> None:
    """The cut answer was not cached: asking again reaches the upstream."""
    before = len(fake_upstream.find(marker))
    assert ask(proxy, marker, task, stream=True).status_code == 200
    assert len(fake_upstream.find(marker)) == before + 1


def test_cut_stream_raises_in_openai_sdk(proxy, fake_upstream, marker):
    fake_upstream.script(Reply(content="y" * 400, chunk_chars=8, cut_after=5, match=marker))
    raw = make_client(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o", stream=True, extra_headers={"X-Task-Type": "editor"},
        messages=[{"role": "user", "content": f"question {marker}"}])
    got = []
    try:
        for chunk in raw.parse():
            got.append(chunk.model_dump(exclude_none=True))
    except openai.APIError:
        return
    # it once ended without raising and never again (30 reruns, 450 repeats at up to 16 at a time): the evidence
    pytest.fail(f"DID NOT RAISE: route {raw.headers.get('x-carrot-route')} model {raw.headers.get('x-carrot-model')}; "
                f"upstream requests {[(q.path, q.json.get('model')) for q in fake_upstream.find(marker)]}; "
                f"{len(got)} chunks, last {got[-3:]}")


def fim_stream(p, marker):
    body = {"model": "gpt-4o", "prompt": f"# {marker}\n", "suffix": "\n", "stream": True}
    with httpx.stream("POST", f"{p.base_url}/v1/completions", json=body, headers=p.headers(), timeout=60) as r:
        r.read()
    return r


PROSE = "word " * 100  # released as it arrives: the cut is reported in-band, after text reached the client


@pytest.mark.parametrize("clean_cut", [False, True], ids=["dropped", "ended-cleanly"])
@pytest.mark.parametrize("content,cut_after", [("z" * 400, 2), ("z" * 400, 30), (PROSE, 2), (PROSE, 30)],
                         ids=["held-early", "held-late", "prose-early", "prose-late"])
def test_cut_fim_stream_is_reported(proxy, fake_upstream, marker, content, cut_after, clean_cut):
    """LiteLLM 1.110 checks a clean end only on chat streams; the gateway does it for FIM too."""
    fake_upstream.script(Reply(content=content, chunk_chars=8, cut_after=cut_after, clean_cut=clean_cut,
                               match=marker))
    r = fim_stream(proxy, marker)
    assert_cut_reported(r, fake_upstream.url)
    if content == PROSE:
        assert r.status_code == 200 and '"text":"word' in r.text, r.text[:300]  # the SSE error-event branch
    assert "broke off mid-stream" in r.text and "ds-coder-6.7b-fim" in r.text, r.text[-500:]
    call = r.headers["x-litellm-call-id"]
    logged = [rec for rec in map(json.loads, (ln for ln in proxy.log().splitlines() if f'"call_id": "{call}"' in ln))
              if rec["event"] == "request"]
    assert [rec["status"] for rec in logged] == ["error"], logged
    assert fim_stream(proxy, marker).status_code == 200  # the cut answer was not cached: asked anew
    assert len(fake_upstream.find(marker)) == 2


@pytest.mark.parametrize("clean_cut", [False, True], ids=["dropped", "ended-cleanly"])
def test_cut_fim_stream_raises_in_openai_sdk(proxy, fake_upstream, marker, clean_cut):
    fake_upstream.script(Reply(content=PROSE, chunk_chars=8, cut_after=30, clean_cut=clean_cut, match=marker))
    stream = make_client(proxy).completions.create(model="gpt-4o", prompt=f"# {marker}\n", suffix="\n", stream=True)
    text, finishes = "", []
    with pytest.raises(openai.APIError, match="broke off mid-stream"):
        for chunk in stream:
            text += "".join(c.text or "" for c in chunk.choices)
            finishes += [c.finish_reason for c in chunk.choices if c.finish_reason]
    assert text and PROSE.startswith(text) and finishes == []


def test_complete_fim_stream_and_its_cached_replay_finish(proxy, fake_upstream, marker):
    fake_upstream.script(Reply(content=PROSE, chunk_chars=8, match=marker))
    for expect in ("miss", "hit"):
        r = fim_stream(proxy, marker)
        assert r.status_code == 200 and r.headers["x-carrot-cache"] == expect, r.text[:300]
        events = sse_events(r.text)
        assert events[-1] == "[DONE]" and not any("error" in json.loads(e) for e in events[:-1]), events[-3:]
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop", events[-3:]
        chunks = [json.loads(e) for e in events[:-1]]
        assert "".join(c["choices"][0].get("text") or "" for c in chunks if c["choices"]) == PROSE, (expect, events[:3])
    assert len(fake_upstream.find(marker)) == 1


def test_complete_stream_still_ends_with_done(proxy, fake_upstream, marker):
    fake_upstream.script(Reply(content="w" * 100, chunk_chars=8, match=marker))
    events = sse_events(ask(proxy, marker, "editor", stream=True).text)
    assert events[-1] == "[DONE]"
    assert not any("error" in json.loads(e) for e in events[:-1])


@pytest.mark.parametrize("task", ["editor", "refactor"])
def test_stream_ended_cleanly_before_its_final_chunk_is_reported(proxy, fake_upstream, marker, task):
    """The upstream closes the body properly but never sends its done/[DONE] chunk (a crashed worker)."""
    fake_upstream.script(Reply(content="v" * 400, chunk_chars=8, cut_after=30, clean_cut=True, match=marker))
    assert_cut_reported(ask(proxy, marker, task, stream=True), fake_upstream.url)
    assert_not_cached(proxy, fake_upstream, marker, task)


AGENT_STREAMS = {  # endpoint → (path, body, extra headers)
    "responses": ("/v1/responses", lambda m: {"model": "gpt-4o", "stream": True, "input": f"question {m}"}, {}),
    "messages": ("/v1/messages", lambda m: {"model": "gpt-4o", "stream": True, "max_tokens": 500,
                                            "messages": [{"role": "user", "content": f"question {m}"}]},
                 {"anthropic-version": "2023-06-01"}),
}


def agent_stream(proxy, which: str, marker: str, task: str) -> tuple[httpx.Response, list[tuple[str | None, dict]]]:
    """POST a streamed agent request; (response, [(event name, data)]) read to a proper end of the body."""
    path, body, extra = AGENT_STREAMS[which]
    with httpx.stream("POST", f"{proxy.base_url}{path}", json=body(marker), timeout=60,
                      headers={**proxy.headers(), "X-Task-Type": task, **extra}) as r:
        r.read()  # raises when the connection is dropped instead of ended
    events, name = [], None
    for line in r.text.splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            events.append((name, json.loads(line[5:])))
    return r, events


@pytest.mark.parametrize("which", sorted(AGENT_STREAMS))
def test_cut_agent_stream_ends_in_an_error_event_naming_the_upstream(proxy, fake_upstream, marker, which):
    """Claude Code (Messages) and Codex (Responses) see a cut answer as failed, never as complete: the stream
    ends properly in the endpoint's own error event (Messages' connection used to be dropped)."""
    secret = planted_secret(marker)
    fake_upstream.script(Reply(content=f"AWS_ACCESS_KEY_ID={secret} then " + "word " * 100, chunk_chars=8,
                               cut_after=30, match=marker))
    r, events = agent_stream(proxy, which, marker, "editor")  # ds-coder-6.7b: no fallback
    assert r.status_code == 200 and events, r.text[-500:]
    name, last = events[-1]
    error = last["error"] if which == "messages" else last["response"]["error"]
    assert (name, last["type"]) == (("error", "error") if which == "messages" else ("response.failed",) * 2), last
    assert "ds-coder-6.7b broke off mid-stream" in error["message"] and fake_upstream.url in error["message"], last
    assert last.get("carrot_guardrails") == "secrets:redact" and secret not in r.text, last  # redacted before the cut
    assert not any(e.get("type") in ("message_stop", "response.completed") for _, e in events)
    assert "word word" in r.text  # text had reached the client before the cut
    call = r.headers["x-litellm-call-id"]
    assert wait_for(lambda: any(f'"call_id": "{call}"' in ln and '"event": "request"' in ln
                                for ln in proxy.log().splitlines()), timeout=30)
    logged = [json.loads(ln) for ln in proxy.log().splitlines() if f'"call_id": "{call}"' in ln]
    [request] = [rec for rec in logged if rec["event"] == "request"]
    assert request["status"] == "error" and [g["action"] for g in request["guardrails"]] == ["redact"], request
    _, events = agent_stream(proxy, which, marker, "editor")  # the cut answer was not cached: asked anew
    assert events[-1][1]["type"] in ("message_stop", "response.completed") and len(fake_upstream.find(marker)) == 2


def test_cut_responses_stream_with_a_fallback_is_continued_there_and_checked(proxy, fake_upstream, marker):
    """LiteLLM continues a Responses stream cut after text on the fallback (the partial answer sent as
    context); chat and Messages streams report the cut. The continuation goes through the output
    guardrail like any answer."""
    fake_upstream.script(Reply(content="word " * 100, chunk_chars=8, cut_after=30, match=marker))
    secret = planted_secret(marker)
    fake_upstream.script(Reply(model=VLLM, match=marker, content=f" key AWS_ACCESS_KEY_ID={secret} then done"))
    r, events = agent_stream(proxy, "responses", marker, "chat")  # ds-coder-v2 → ds-coder-v2-vllm
    assert r.status_code == 200 and events[-1][1]["type"] == "response.completed", r.text[-500:]
    text = "".join(e.get("delta", "") for _, e in events if e.get("type") == "response.output_text.delta")
    assert text.startswith("word word") and text.endswith("then done") and secret not in text, text
    assert [q.json["model"] for q in fake_upstream.find(marker)] == [V2, VLLM]
    fake_upstream.script(Reply(content="word " * 100, chunk_chars=8, cut_after=30, match=marker + "-m"))
    _, events = agent_stream(proxy, "messages", marker + "-m", "chat")
    assert events[-1][0] == "error" and "broke off mid-stream" in events[-1][1]["error"]["message"], events[-1]


# --- answers that arrive but are not valid ---

def post(p, path: str, body: dict, stream: bool = False) -> httpx.Response:
    headers = {**p.headers(), "anthropic-version": "2023-06-01"}
    with httpx.stream("POST", f"{p.base_url}{path}", json=body, headers=headers, timeout=60) as r:
        r.read()
    return r


def bodies(model: str, marker: str) -> dict[str, dict]:
    """One plain request per endpoint."""
    return {"/v1/chat/completions": {"model": model, "messages": [{"role": "user", "content": f"hi {marker}"}]},
            "/v1/messages": {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": f"hi {marker}"}]},
            "/v1/responses": {"model": model, "input": f"hi {marker}"}}


def error_message(r: httpx.Response) -> str:
    return r.json()["error"]["message"]


CHAT_ANSWER = {"id": "x", "object": "chat.completion", "created": 1, "model": "m"}


@pytest.mark.parametrize("model,reply,paths", [
    ("ds-coder-v2-vllm", Reply(raw="<html>proxy error page</html>", raw_type="text/html"),
     ["/v1/chat/completions", "/v1/messages", "/v1/responses"]),
    ("ds-coder-6.7b", Reply(raw=""), ["/v1/chat/completions", "/v1/messages"]),
    ("ds-coder-6.7b", Reply(raw=json.dumps({"model": "m", "message": None, "done": True})), ["/v1/chat/completions"]),
    ("ds-coder-v2-vllm", Reply(raw=json.dumps({**CHAT_ANSWER, "choices": [
        {"index": 0, "message": None, "finish_reason": "stop"}]})), ["/v1/chat/completions"]),
    ("ds-coder-v2-vllm", Reply(raw=json.dumps({**CHAT_ANSWER, "usage": "x", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})),
     ["/v1/chat/completions"]),
], ids=["vllm-html", "ollama-empty-body", "ollama-message-null", "vllm-message-null", "vllm-usage-not-an-object"])
def test_an_invalid_answer_is_502_saying_so_not_unreachable(proxy, fake_upstream, marker, model, reply, paths):
    """The upstream was reached and answered 200 with something that is not an answer: 502 naming it, never
    "could not be reached" (LiteLLM wraps the decoding error in APIConnectionError) nor a 500 echoing its body."""
    for path in paths:
        fake_upstream.script(dataclasses.replace(reply, match=f"{marker}{path}"))
        r = post(proxy, path, bodies(model, f"{marker}{path}")[path])
        assert r.status_code == 502, (path, r.text)
        assert f"Upstream for model {model} returned an invalid response" in error_message(r), (path, r.text)
        assert fake_upstream.url in error_message(r) and "html" not in r.text, (path, r.text)


@pytest.mark.parametrize("model", ["ds-coder-v2-vllm", "ds-coder-6.7b"])
def test_a_tool_call_with_arguments_that_are_not_json_is_502_on_messages(proxy, fake_upstream, marker, model):
    """LiteLLM's Anthropic adapter cannot turn such a call into a tool_use block (a 500 before); chat passes it on."""
    fake_upstream.script(Reply(match=marker, times=2, tool_calls=[{"name": "f", "arguments": "{bad"}]))
    r = post(proxy, "/v1/messages", bodies(model, marker)["/v1/messages"])
    assert r.status_code == 502, r.text
    assert error_message(r) == (f"Upstream for model {model} returned a tool call whose arguments are not JSON: "
                                f"{fake_upstream.url}{'/v1' if 'vllm' in model else ''}"), r.text
    assert post(proxy, "/v1/chat/completions", bodies(model, marker)["/v1/chat/completions"]).status_code == 200


@pytest.mark.parametrize("which", ["chat", *sorted(AGENT_STREAMS)])
def test_an_ollama_error_line_mid_stream_is_the_upstream_s_failure(proxy, fake_upstream, marker, which):
    """Ollama reports a failure during generation as an {"error": ...} line: the stream ends in the gateway's own
    upstream error (502 / api_error, as for a cut), never LiteLLM's 400 invalid_request_error blaming the client."""
    fake_upstream.script(Reply(content="word " * 50, chunk_chars=8, cut_after=5, error_line="model runner crashed",
                               match=marker))
    expected = f"Upstream for model ds-coder-6.7b failed mid-stream: {fake_upstream.url}"
    if which == "chat":
        r = ask(proxy, marker, "editor", stream=True)
        last = json.loads(sse_events(r.text)[-2])  # before [DONE]
        assert (last["error"]["message"], last["error"]["code"]) == (expected, "502"), r.text[-500:]
        return
    r, events = agent_stream(proxy, which, marker, "editor")
    name, last = events[-1]
    error = last["error"] if which == "messages" else last["response"]["error"]
    assert name == ("error" if which == "messages" else "response.failed"), last
    assert error["message"] == expected and "invalid_request" not in r.text, last
    if which == "messages":
        assert error["type"] == "api_error", last
