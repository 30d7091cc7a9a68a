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


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_call_then_text_after_the_tool_result(fake, stream):
    fake.script(Reply(match="oa-tools", content="done", call_tool="read_file", tool_arguments={"path": "a.py"},
                      times=2))
    body = {"model": "m", "stream": stream, "tools": TOOLS, "messages": [{"role": "user", "content": "oa-tools"}]}
    first = httpx.post(f"{fake.url}/v1/chat/completions", json=body)
    if stream:
        calls = [c for e in _sse(first) for c in e["choices"][0]["delta"].get("tool_calls") or []]
        assert _sse(first)[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        calls = first.json()["choices"][0]["message"]["tool_calls"]
        assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
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
