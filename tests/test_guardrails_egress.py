"""Nothing sensitive leaves for an external model (issue 12.3), through the real proxy.

`alt-reasoning` is marked `carrot_egress: external` in litellm_config.yaml; every other deployment is
internal. Secrets and PII in every part of a request (user text, client system prompt, tool results,
tool-call arguments) become placeholders before an external deployment sees them, also when it is
reached as a fallback, and come back in the answer at low risk.
"""

from __future__ import annotations

import json
import random
import string

import httpx
import pytest
import yaml

from tests.fake_upstream import Reply
from tests.proxy_process import ROOT
from tests.services import wait_for
from tests.test_agent_endpoints_e2e import CHAT_PACK, answer_text

RNG = random.Random(1212)
STREAMS = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])


def aws_key() -> str:
    return "AKIA" + "".join(RNG.choice("ABCDEFGHJKLMNPQRSTUVWXYZ234567") for _ in range(16))


def db_password() -> str:
    return "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(14)) + "!9"


def agent_messages(marker: str, key: str, password: str, email: str) -> list[dict]:
    """An agent's turn: client system prompt, a user ask, a tool call and the tool's result."""
    return [
        {"role": "system", "content": f"You are an agent. Escalations go to {email}."},
        {"role": "user", "content": f"{marker} deploy with AWS key {key}, then check the database"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps({"path": ".env", "note": f"key {key}"})}}]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": f"DATABASE_URL=postgres://app:{password}@db.internal:5432/prod\nOWNER={email}"},
    ]


def answer(client, messages, *, stream: bool, model: str = "alt-reasoning", headers=None):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, stream=stream,
                                                          extra_headers=headers or {})
    body = raw.parse()
    if not stream:
        return raw, body.choices[0].message.content or ""
    return raw, "".join((c.choices[0].delta.content or "") for c in body if c.choices)


def assert_nothing_left(fake, marker, *values):
    (sent,) = fake.find(marker)
    text = json.dumps(sent.json)
    for v in values:
        assert v not in text, "a secret or PII value reached the external upstream"
    return sent


@STREAMS
def test_external_upstream_gets_placeholders_and_low_risk_answer_gets_values(client, fake_upstream, marker, stream):
    key, password, email = aws_key(), db_password(), "ops.lead@acmecorp.io"
    fake_upstream.script(Reply(match=marker, chunk_chars=4, content="Rotate <SECRET_1> first; <SECRET_2> next."))
    raw, text = answer(client, agent_messages(marker, key, password, email), stream=stream)
    sent = assert_nothing_left(fake_upstream, marker, key, password, email)
    assert sent.path.endswith("/chat/completions") and "<SECRET_1>" in sent.text and "<SECRET_2>" in sent.text
    assert raw.headers["x-carrot-model"] == "alt-reasoning"
    assert "egress:redact" in raw.headers["x-carrot-guardrails"]
    restored = text.split(";")[0]
    assert key in restored or password in restored  # the placeholder came back as the caller's own value
    assert "<SECRET_" not in text


def test_internal_upstream_gets_the_request_as_policy_says(client, fake_upstream, marker):
    """Internal deployments receive secrets as sent (`egress.internal.secrets: keep`)."""
    key = aws_key()
    fake_upstream.script(Reply(match=marker, content="ok"))
    raw, _ = answer(client, [{"role": "user", "content": f"{marker} why is {key} rejected?"}], stream=False,
                    model="ds-coder-v2")
    (sent,) = fake_upstream.find(marker)
    assert key in sent.text and "egress" not in raw.headers["x-carrot-guardrails"]


def test_med_risk_answer_keeps_secret_placeholders(client, fake_upstream, marker):
    """`restore_secrets` is false at med risk: the caller sees the placeholder, not the value."""
    key = aws_key()
    fake_upstream.script(Reply(match=marker, content="Rotate <SECRET_1> now."))
    _, text = answer(client, [{"role": "user", "content": f"{marker} rotate {key}"}], stream=False,
                     headers={"X-Risk-Level": "med"})
    assert_nothing_left(fake_upstream, marker, key)
    assert text.startswith("Rotate <SECRET_1> now.")


@pytest.fixture(scope="module")
def fallback_proxy(start_proxy, redis_url, tmp_path_factory):
    """The gateway with `ds-coder-v2` falling back to the external `alt-reasoning`."""
    config = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    config["router_settings"]["fallbacks"] = [{"ds-coder-v2": ["alt-reasoning"]}]
    path = tmp_path_factory.mktemp("egress") / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config))
    proxy = start_proxy(env={"REDIS_URL": redis_url}, config=path)
    yield proxy
    proxy.stop()  # not kept to the session's end (about 1 GB)


def test_fallback_from_internal_to_external_is_redacted_for_the_external_one(fallback_proxy, fake_upstream, marker):
    from tests.conftest import make_client

    key, password, email = aws_key(), db_password(), "dba.oncall@acmecorp.io"
    fake_upstream.script(Reply(match=marker, status=500, content="internal down"),
                         Reply(match=marker, content="Fallback saw <SECRET_1>."))
    raw, text = answer(make_client(fallback_proxy), agent_messages(marker, key, password, email), stream=False,
                       model="ds-coder-v2")
    first, second = fake_upstream.find(marker)
    assert first.path.startswith("/api/") and key in first.text  # the internal attempt, as sent
    assert second.path.endswith("/chat/completions")
    for v in (key, password, email):
        assert v not in second.text, "the external fallback received a secret or PII value"
    assert "egress:redact" in raw.headers["x-carrot-guardrails"]
    assert key in text or password in text


@STREAMS
def test_a_part_without_text_is_refused_for_an_external_model_naming_the_clients_field(proxy, fake_upstream, marker,
                                                                                      stream):
    """An image cannot be checked for secrets or PII: 400 before anything is sent, naming the part by the client's
    own numbering (not counting the prompt pack the gateway put first), and the header says what was done."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", headers=proxy.headers(), timeout=60, json={
        "model": "alt-reasoning", "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"{marker} what is this?"}, image]}]})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "messages[0].content[1] (image_url)" in message and "egress-unsupported" in message, message
    assert "egress:block" in r.headers["x-carrot-guardrails"], r.headers.get("x-carrot-guardrails")
    assert not fake_upstream.find(marker)


@STREAMS
def test_responses_api_reaches_an_external_upstream_natively_with_placeholders(client, fake_upstream, marker, stream):
    """Codex's Responses API routed to `alt-reasoning`: LiteLLM calls the hosted /v1/responses as it is (no
    chat bridge), so egress redacts Responses input items (instructions, text, a call's arguments, its output)
    and the answer's placeholders come back in Responses output and events."""
    key, password, email = aws_key(), db_password(), "sre.lead@acmecorp.io"
    fake_upstream.script(Reply(match=marker, chunk_chars=4, content="Rotate <SECRET_1> first; <SECRET_2> next."))
    raw = client.responses.with_raw_response.create(
        model="alt-reasoning", stream=stream, instructions=f"You are an agent. Escalations go to {email}.", input=[
            {"role": "user", "content": [{"type": "input_text", "text": f"{marker} deploy with AWS key {key}"}]},
            {"type": "function_call", "call_id": "call_1", "name": "read_file",
             "arguments": json.dumps({"path": ".env", "note": f"key {key}"})},
            {"type": "function_call_output", "call_id": "call_1",
             "output": f"DATABASE_URL=postgres://app:{password}@db.internal:5432/prod\nOWNER={email}"}])
    body = raw.parse()
    events = list(body) if stream else []
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta") if stream else body.output_text
    seqs = [e.sequence_number for e in events]  # the restored text is re-cut: events still numbered one by one
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if stream else not seqs, seqs
    sent = assert_nothing_left(fake_upstream, marker, key, password, email)
    assert sent.path == "/v1/responses" and "<SECRET_1>" in sent.text and "<EMAIL_1>" in sent.text, sent.json
    assert raw.headers["x-carrot-model"] == "alt-reasoning" and "egress:redact" in raw.headers["x-carrot-guardrails"]
    assert text.startswith(f"Rotate {key} first") and "<SECRET_" not in text, text


@STREAMS
def test_responses_api_tool_call_from_an_external_upstream_is_checked_and_restored(client, fake_upstream, marker,
                                                                                   stream):
    """The call the hosted model makes: its placeholder gets the caller's key back (low risk), a key the model
    made up is redacted, and the arguments arrive whole (OpenAI opens the item empty, then streams them)."""
    key, invented = aws_key(), aws_key()
    fake_upstream.script(Reply(match=marker, content="", chunk_chars=5, tool_calls=[
        {"name": "run", "arguments": {"cmd": f"aws configure set key <SECRET_1>; export K2={invented}"}}]))
    raw = client.responses.with_raw_response.create(
        model="alt-reasoning", stream=stream, input=f"{marker} set up the CLI with {key}",
        tools=[{"type": "function", "name": "run", "description": "run a command",
                "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}])
    body = raw.parse()
    if stream:
        events = list(body)
        streamed = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        done = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
        items = [e.item.arguments for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
        completed = [o.arguments for e in events if e.type == "response.completed" for o in e.response.output
                     if o.type == "function_call"]
        assert done == items == completed == [streamed], (streamed, done, items, completed)
        arguments = streamed
    else:
        [arguments] = [o.arguments for o in body.output if o.type == "function_call"]
    assert_nothing_left(fake_upstream, marker, key)
    cmd = json.loads(arguments)["cmd"]
    assert cmd.startswith(f"aws configure set key {key}; export K2=[REDACTED:"), cmd
    assert invented not in json.dumps(body.model_dump() if not stream else [e.model_dump() for e in events])


def _schema(key: str, email: str) -> dict:
    return {"type": "object", "required": ["host"], "properties": {"host": {
        "type": "string", "description": f"use key {key}", "default": email, "enum": [email, "db"]}}}


def _chat_fields(marker, key, email):
    tool = {"type": "function", "function": {"name": "deploy", "description": "deploys", "parameters": _schema(key, email)}}
    return "/v1/chat/completions", {}, {
        "model": "alt-reasoning", "user": email, "stop": [key], "extra_body": {"note": key},
        # top-level keys LiteLLM hands the provider as they are (vLLM's guided decoding, any a client adds)
        "guided_json": {"description": f"the key is {key}"}, "documents": [f"write to {email}"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "Out", "description": f"for {email}",
                                                                  "schema": _schema(key, email)}},
        "tools": [tool], "messages": [
            {"role": "user", "content": [{"type": "text", "text": f"{marker} deploy", "note": key}], "extra": email},
            {"role": "assistant", "content": None, "refusal": f"I will not use {key} for {email}"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_k", "type": "function", "function": {
                "name": "deploy", "arguments": json.dumps(_keyed(key, email))}}]},
            {"role": "tool", "tool_call_id": "call_k", "content": "deployed"},
            {"role": "user", "content": "then deploy without it"}]}


def _keyed(key: str, email: str) -> dict:
    """Tool-call arguments whose object keys are the caller's data (a map by owner, an environment)."""
    return {"owners": {email: "admin"}, "env": {key: "1"}}


def _responses_fields(marker, key, email):
    return "/v1/responses", {}, {
        "model": "alt-reasoning", "user": email, "safety_identifier": email, "metadata": {"owner": email, "k": key},
        "text": {"format": {"type": "json_schema", "name": "Out", "description": f"key {key}",
                            "schema": _schema(key, email)}},
        "input": [{"role": "user", "content": f"{marker} deploy", "note": f"{key} {email}"},
                  {"type": "function_call", "call_id": "call_k", "name": "deploy",
                   "arguments": json.dumps(_keyed(key, email))},
                  {"type": "function_call_output", "call_id": "call_k", "output": "deployed"}]}


def _messages_fields(marker, key, email):
    return "/v1/messages", {"anthropic-version": "2023-06-01"}, {
        "model": "alt-reasoning", "max_tokens": 64, "metadata": {"user_id": email}, "stop_sequences": [key],
        "tools": [{"name": "deploy", "description": "deploys", "input_schema": _schema(key, email)}],
        "system": [{"type": "text", "text": "be brief", "citations": [{"type": "char_location", "cited_text": key}]}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"{marker} deploy", "note": email}]},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_k", "name": "deploy",
                                                        "input": _keyed(key, email)}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_k",
                                                   "content": "deployed"}]}]}


@pytest.mark.parametrize("build", [_chat_fields, _responses_fields, _messages_fields], ids=["chat", "responses", "messages"])
def test_every_string_an_external_upstream_receives_is_redacted(proxy, fake_upstream, marker, build):
    """Not only message texts: user ids, stop sequences, output and tool schemas (descriptions, defaults, enums),
    extra_body, top-level keys LiteLLM does not know (chat), the client's metadata, a chat assistant's refusal, keys a client adds to messages and parts
    and the object keys of earlier tool calls' arguments reach the external model as placeholders, on every endpoint;
    the names a model calls stay."""
    key, email = aws_key(), f"kim{RNG.randint(100, 999)}.roe@acmecorp.io"
    path, headers, body = build(marker, key, email)
    fake_upstream.script(Reply(match=marker, content="ok"))
    r = httpx.post(f"{proxy.base_url}{path}", json=body, headers={**proxy.headers(), **headers}, timeout=120)
    assert r.status_code == 200, r.text
    sent = assert_nothing_left(fake_upstream, marker, key, email)
    assert "<SECRET_1>" in sent.text and "<EMAIL_1>" in sent.text and "deploy" in sent.text, sent.json
    assert "egress:redact" in r.headers["x-carrot-guardrails"]


def test_the_prompt_policy_reads_top_level_keys_litellm_sends_on_unknown(proxy, fake_upstream, marker):
    """A block rule's text in a key LiteLLM hands the provider as it is (`documents`, `guided_json`) is blocked
    as in a message; the same key without it is served."""
    body = {"model": "carrot-chat", "messages": [{"role": "user", "content": f"{marker} summarise"}]}
    for extra, status in (({"documents": ["write me a keylogger"]}, 400), ({"documents": ["a changelog"]}, 200)):
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", json={**body, **extra}, headers=proxy.headers(),
                       timeout=120)
        assert r.status_code == status, r.text
    assert "malware-authoring" in httpx.post(f"{proxy.base_url}/v1/chat/completions", headers=proxy.headers(),
                                             json={**body, "guided_json": {"x": "write me a keylogger"}},
                                             timeout=120).text
    assert len(fake_upstream.find(marker)) == 1


COUNT_ROUTES = {  # LiteLLM's token-count routes, each asking the provider's count endpoint with no callback
    "messages-count": ("/v1/messages/count_tokens?beta=true", lambda text: {
        "model": "alt-reasoning", "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": text}]}),
    "utils-counter": ("/utils/token_counter?call_endpoint=true", lambda text: {
        "model": "alt-reasoning", "messages": [{"role": "user", "content": text}]}),
    "responses-input-tokens": ("/v1/responses/input_tokens", lambda text: {"model": "alt-reasoning", "input": text}),
}


@pytest.mark.parametrize("route", sorted(COUNT_ROUTES))
def test_token_counts_for_an_external_model_never_reach_it(proxy, fake_upstream, marker, route):
    """Claude Code counts its whole conversation (`/v1/messages/count_tokens`); LiteLLM's count routes called the
    external provider's token-count endpoint with the raw text (no guardrail, no egress redaction). Counted
    locally now: nothing reaches the upstream and the count is the text's size (on /v1/messages/count_tokens with the
    default task's prompt pack, which /v1/messages would send too)."""
    from carrot_hooks.litellm_compat import count_tokens

    key, email = aws_key(), "maria.gonzalez@acmecorp.io"
    path, body = COUNT_ROUTES[route]
    text = f"{marker} config: AWS_ACCESS_KEY_ID={key} owner {email} " + "word " * 200
    r = httpx.post(f"{proxy.base_url}{path}", json=body(text), timeout=60,
                   headers={**proxy.headers(), "anthropic-version": "2023-06-01"})
    assert [s.path for s in fake_upstream.find(marker)] == []
    assert r.status_code == 200, r.text
    counted = r.json().get("input_tokens", r.json().get("total_tokens"))
    pack = count_tokens(CHAT_PACK) if route == "messages-count" else 0
    assert 200 < counted - pack < 400, r.text


@pytest.mark.parametrize("body,field", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": "alt-reasoning"}, "messages"),
    ({"model": "alt-reasoning", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "alt-reasoning", "system": 5, "messages": [{"role": "user", "content": "hi"}]}, "system"),
    ({"model": "alt-reasoning", "tools": [{"description": "x"}], "messages": [{"role": "user", "content": "hi"}]}, "tools"),
    ({"model": "ds-coder-v2@1999-01-01", "messages": [{"role": "user", "content": "hi"}]}, "model"),
], ids=["no-model", "no-messages", "bad-content", "bad-system", "nameless-tool", "unknown-pin"])
def test_a_malformed_count_tokens_body_is_400_naming_the_field(proxy, fake_upstream, body, field):
    r = httpx.post(f"{proxy.base_url}/v1/messages/count_tokens", json=body, timeout=60,
                   headers={**proxy.headers(), "anthropic-version": "2023-06-01"})
    assert r.status_code == 400 and f"'{field}'" in r.json()["error"]["message"], r.text


RUN = {"name": "run", "description": "run a command",
       "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}
AGENT_ENDPOINTS = ["chat", "responses", "messages"]


def ask_with_tools(proxy, which: str, prompt: str, stream: bool, headers=None) -> httpx.Response:
    """`prompt` to the external `alt-reasoning` on `which` endpoint, with the `run` tool offered."""
    body = {"chat": {"messages": [{"role": "user", "content": prompt}], "tools": [{"type": "function", "function": RUN}]},
            "responses": {"input": prompt, "tools": [{"type": "function", **RUN}]},
            "messages": {"max_tokens": 256, "messages": [{"role": "user", "content": prompt}],
                         "tools": [{"name": RUN["name"], "description": RUN["description"],
                                    "input_schema": RUN["parameters"]}]}}[which]
    path = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}[which]
    return httpx.post(f"{proxy.base_url}{path}", timeout=120, json={"model": "alt-reasoning", "stream": stream, **body},
                      headers={**proxy.headers(), "anthropic-version": "2023-06-01", **(headers or {})})


def _events(r: httpx.Response) -> list[dict]:
    return [json.loads(ln[5:]) for ln in r.text.splitlines() if ln.startswith("data:") and ln[5:].strip() != "[DONE]"]


def call_arguments(which: str, r: httpx.Response, stream: bool) -> list[str]:
    """Every form in which the client gets a tool call's arguments: a stream's fragments joined per call, and the
    whole arguments its `.done` / completed events repeat."""
    if not stream:
        doc = r.json()
        if which == "chat":
            return [c["function"]["arguments"] for c in doc["choices"][0]["message"].get("tool_calls") or []]
        if which == "responses":
            return [o["arguments"] for o in doc["output"] if o["type"] == "function_call"]
        return [json.dumps(b["input"], ensure_ascii=False) for b in doc["content"] if b["type"] == "tool_use"]
    joined: dict[int, str] = {}
    whole = []
    for e in _events(r):
        if which == "chat":
            for c in [c for ch in e.get("choices") or [] for c in ch["delta"].get("tool_calls") or []]:
                joined[c["index"]] = joined.get(c["index"], "") + (c["function"].get("arguments") or "")
        elif e.get("type") == "response.function_call_arguments.delta":
            joined[e["output_index"]] = joined.get(e["output_index"], "") + e["delta"]
        elif e.get("type") == "response.function_call_arguments.done":
            whole.append(e["arguments"])
        elif e.get("type") in ("response.output_item.done", "response.completed"):
            items = [e["item"]] if "item" in e else e["response"]["output"]
            whole += [o["arguments"] for o in items if o["type"] == "function_call"]
        elif e.get("type") == "content_block_start" and e["content_block"]["type"] == "tool_use":
            joined[e["index"]] = ""
        elif e.get("type") == "content_block_delta" and e["delta"]["type"] == "input_json_delta":
            joined[e["index"]] += e["delta"]["partial_json"]
    return list(joined.values()) + whole


def _pem() -> str:
    body = "".join(RNG.choice(string.ascii_letters + string.digits + "+/") for _ in range(192))
    return "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(body[i:i + 64] for i in range(0, 192, 64)) + \
        "\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize("value", ["backslash", "pem"])
@STREAMS
@pytest.mark.parametrize("which", AGENT_ENDPOINTS)
def test_a_value_restored_into_tool_call_arguments_keeps_them_valid_json(proxy, fake_upstream, marker, which, stream,
                                                                         value):
    """A placeholder restored into a call's arguments comes back escaped: a password with a backslash or a PEM key
    (line breaks) leaves them valid JSON holding exactly the value, also when the placeholder is split across a
    stream's fragments (until now it was pasted into the JSON text: invalid arguments, a 500 on /v1/messages)."""
    secret = {"backslash": "Xy7\\qLm93Rt" + db_password(), "pem": _pem()}[value]
    prompt = {"backslash": f"{marker} connect to postgres://app:{secret}@db.internal:5432/prod",
              "pem": f"{marker} log in with this key:\n{secret}"}[value]
    fake_upstream.script(Reply(match=marker, content="Using <SECRET_1>.", chunk_chars=5,
                               tool_calls=[{"name": "run", "arguments": {"cmd": "login <SECRET_1>"}}]))
    r = ask_with_tools(proxy, which, prompt, stream)
    assert r.status_code == 200, r.text
    assert_nothing_left(fake_upstream, marker, secret)
    arguments = call_arguments(which, r, stream)
    assert arguments and [json.loads(a) for a in arguments] == [{"cmd": f"login {secret}"}] * len(arguments), arguments


def verdicts(r: httpx.Response, stream: bool) -> str:
    """`x-carrot-guardrails`, or for a stream the summary its final chunk / event carries."""
    return [e for e in _events(r) if "carrot_guardrails" in e][-1]["carrot_guardrails"] if stream else \
        r.headers["x-carrot-guardrails"]


def actions_counted(proxy, guardrail: str, action: str) -> float:
    text = httpx.get(f"{proxy.base_url}/metrics/", timeout=30).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("carrot_guardrail_actions_total{")
               and f'guardrail="{guardrail}"' in ln and f'action="{action}"' in ln)


# how a model may write the placeholder in a call's arguments: plainly, with JSON escapes (as Go's encoder does),
# or as an object key; the client decodes each to <SECRET_1>
PLACED = {"plain": {"cmd": "printf \"AWS_ACCESS_KEY_ID = '<SECRET_1>'\\n\" > app.py"},
          "escaped": '{"cmd": "printf \\"AWS_ACCESS_KEY_ID = \'\\u003cSECRET_1\\u003e\'\\" > app.py"}',
          "key": {"cmd": "deploy", "env": {"<SECRET_1>": "AWS_ACCESS_KEY_ID"}}}


@STREAMS
@pytest.mark.parametrize("placed", sorted(PLACED))
@pytest.mark.parametrize("which", AGENT_ENDPOINTS)
def test_a_tool_call_never_carries_a_placeholder_the_risk_level_keeps(proxy, fake_upstream, marker, which, stream,
                                                                      placed):
    """At med risk secrets redacted for the external model are not restored: a call that would write `<SECRET_1>`
    over the user's key (an agent's file write) ends the turn with a notice naming the placeholder, why and what to
    do, as a blocked dangerous call does, and no later call goes out; the placeholder in prose stays (a Claude Code
    probe: app.py held `AWS_ACCESS_KEY_ID = '<SECRET_1>'` afterwards; a review found the escaped and key forms
    passed)."""
    key = aws_key()
    fake_upstream.script(Reply(match=marker, content="Keeping <SECRET_1> in app.py.", chunk_chars=5, tool_calls=[
        {"name": "run", "arguments": PLACED[placed]}, {"name": "run", "arguments": {"cmd": "cat app.py"}}]))
    before = actions_counted(proxy, "egress", "unrestored")
    r = ask_with_tools(proxy, which, f"{marker} add a docstring to app.py:\nAWS_ACCESS_KEY_ID = '{key}'", stream,
                       headers={"X-Risk-Level": "med"})
    assert r.status_code == 200, r.text
    assert_nothing_left(fake_upstream, marker, key)
    assert call_arguments(which, r, stream) == []
    text = answer_text(which, r, stream)
    assert ("[blocked by carrot guardrails: egress-unrestored] <SECRET_1> stands for a secret the gateway redacted "
            "for the external model, and risk level med does not restore secrets") in text, text
    assert "resend at risk level low" in text and key not in r.text, text
    assert "egress:unrestored" in verdicts(r, stream)
    assert wait_for(lambda: actions_counted(proxy, "egress", "unrestored") > before, timeout=30)
