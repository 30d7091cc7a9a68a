"""The test double itself: tool-calling answers in both chat wire formats, deterministic, refusals like Ollama."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fake_upstream import FakeUpstream, Reply, planted_secret

TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "run", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def fake():
    f = FakeUpstream()
    yield f
    f.close()


def _ollama_lines(r: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in r.text.splitlines() if line]


def _sse(r: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]


def _chat_calls(r: httpx.Response, stream: bool) -> list[dict]:
    """A chat answer's tool calls; streamed ones assembled from their fragments by index."""
    if not stream:
        return r.json()["choices"][0]["message"]["tool_calls"]
    calls: dict[int, dict] = {}
    for frag in (c for e in _sse(r) for c in e["choices"][0]["delta"].get("tool_calls") or []):
        call = calls.setdefault(frag["index"], {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
        call["id"] = frag.get("id") or call["id"]
        call["function"]["name"] = frag["function"].get("name") or call["function"]["name"]
        call["function"]["arguments"] += frag["function"].get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_call_then_text_after_the_tool_result(fake, stream):
    fake.script(Reply(match="oa-tools", content="done", call_tool="read_file", tool_arguments={"path": "a.py"},
                      times=2))
    body = {"model": "m", "stream": stream, "tools": TOOLS, "messages": [{"role": "user", "content": "oa-tools"}]}
    first = httpx.post(f"{fake.url}/v1/chat/completions", json=body)
    calls = _chat_calls(first, stream)
    assert (_sse(first)[-1] if stream else first.json())["choices"][0]["finish_reason"] == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("read_file", {"path": "a.py"})]
    body["messages"] += [{"role": "assistant", "content": None, "tool_calls": calls},
                         {"role": "tool", "tool_call_id": calls[0]["id"], "content": "print(1)"}]
    second = httpx.post(f"{fake.url}/v1/chat/completions", json=body)
    if stream:
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in _sse(second)) == "done"
        assert _sse(second)[-1]["choices"][0]["finish_reason"] == "stop"
    else:
        assert second.json()["choices"][0]["message"] == {"role": "assistant", "content": "done"}


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_tool_call_then_text_after_the_tool_result(fake, stream):
    fake.script(Reply(match="ol-tools", content="done", call_tool="run", tool_arguments={"cmd": "ls"}, times=2))
    body = {"model": "m", "stream": stream, "tools": TOOLS, "messages": [{"role": "user", "content": "ol-tools"}]}
    first = httpx.post(f"{fake.url}/api/chat", json=body)
    msgs = [e["message"] for e in _ollama_lines(first)] if stream else [first.json()["message"]]
    calls = [c for m in msgs for c in m.get("tool_calls") or []]
    assert calls == [{"function": {"name": "run", "arguments": {"cmd": "ls"}}}]
    body["messages"] += [{"role": "assistant", "content": "", "tool_calls": calls},
                         {"role": "tool", "content": "a.py"}]
    second = httpx.post(f"{fake.url}/api/chat", json=body)
    msgs = [e["message"] for e in _ollama_lines(second)] if stream else [second.json()["message"]]
    assert "".join(m["content"] for m in msgs) == "done" and not any(m.get("tool_calls") for m in msgs)


@pytest.mark.parametrize("stream", [False, True])
def test_every_tool_call_gets_its_own_id_unless_the_script_names_one(fake, stream):
    """Real models give each call a unique id (Claude Code loops on a repeated one); a scripted id wins."""
    calls = [{"name": "run", "arguments": {"cmd": "ls"}}, {"name": "run", "arguments": {"cmd": "pwd"}, "id": "mine"}]
    fake.script(Reply(match="ids", tool_calls=calls, chunk_chars=3, times=2))
    body = {"model": "m", "stream": stream, "tools": TOOLS, "messages": [{"role": "user", "content": "ids"}]}
    ids = [c["id"] for _ in range(2) for c in _chat_calls(httpx.post(f"{fake.url}/v1/chat/completions", json=body),
                                                         stream)]
    assert ids[1] == ids[3] == "mine" and len({ids[0], ids[2], "mine"}) == 3, ids
    body = {"model": "m", "stream": False, "tools": TOOLS, "input": "ids"}
    fake.script(Reply(match="ids", tool_calls=calls))
    items = [o for o in httpx.post(f"{fake.url}/v1/responses", json=body).json()["output"] if o["type"] == "function_call"]
    assert items[1]["call_id"] == "mine" and items[0]["call_id"] not in ids and items[0]["id"] != items[1]["id"]


def test_a_tool_the_request_does_not_offer_is_not_called(fake):
    fake.script(Reply(match="no-such-tool", content="text only", call_tool="delete_everything"))
    r = httpx.post(f"{fake.url}/v1/chat/completions", json={
        "model": "m", "tools": TOOLS, "messages": [{"role": "user", "content": "no-such-tool"}]})
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "text only"}


def test_ollama_models_without_tools_refuse_them_like_ollama(fake):
    fake.models_without_tools.add("deepseek-coder")
    try:
        with_tools = httpx.post(f"{fake.url}/api/chat", json={
            "model": "deepseek-coder:6.7b", "stream": False, "tools": TOOLS, "messages": [{"role": "user", "content": "x"}]})
        without = httpx.post(f"{fake.url}/api/chat", json={
            "model": "deepseek-coder:6.7b", "stream": False, "messages": [{"role": "user", "content": "x"}]})
    finally:
        fake.models_without_tools.clear()
    assert with_tools.status_code == 400 and "does not support tools" in with_tools.json()["error"]
    assert without.status_code == 200


def test_planted_secret_is_deterministic_and_looks_like_an_aws_key():
    assert planted_secret("a") == planted_secret("a") != planted_secret("b")
    assert planted_secret("a").startswith("AKIA") and len(planted_secret("a")) == 20
