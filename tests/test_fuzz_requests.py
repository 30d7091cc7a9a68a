"""Hostile input through the real proxy: property-based bodies and headers, plus the big edge cases
(invalid UTF-8, huge strings, deep nesting, 10k messages, content arrays with images and tool calls).
Every answer is < 500 and comes back before the client timeout; a 4xx names what was wrong."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TIMEOUT = 30.0  # a hang fails the test through httpx.ReadTimeout
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

text = st.text(max_size=200)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=12)
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "function", "", "root"]) | text | scalars
image_part = st.fixed_dictionaries({"type": st.just("image_url"),
                                    "image_url": st.fixed_dictionaries({"url": st.sampled_from(
                                        ["data:image/png;base64,iVBORw0KGgo=", "http://127.0.0.1:9/x.png", "", "nope"])})})
text_part = st.fixed_dictionaries({"type": st.just("text"), "text": text})
tool_call = st.fixed_dictionaries({"id": text, "type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": text, "arguments": text | json_values})})
content = text | st.lists(text_part | image_part | json_values, max_size=4) | json_values
message = st.fixed_dictionaries({"role": roles, "content": content},
                                optional={"tool_calls": st.lists(tool_call, max_size=2) | json_values,
                                          "name": text | scalars, "tool_call_id": text, "extra_field": json_values})
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o", "carrot-editor", "ds-coder-v2", "ds-coder-v2@2025-09-23", "", "nope"])
              | scalars,
     "messages": st.lists(message, max_size=6) | json_values},
    optional={"stream": st.booleans() | scalars, "max_tokens": st.integers() | scalars,
              "temperature": st.floats(allow_nan=False) | scalars, "tools": json_values, "cache": json_values,
              "metadata": json_values, "user": scalars, "n": st.integers(-1, 3), "unknown_field": json_values})
header_names = st.sampled_from(["X-Task-Type", "X-Risk-Level", "X-Model-Alias", "X-Context-Refs", "X-Tenant",
                                "Cache-Control", "Content-Length"])
header_values = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").strip()) | st.sampled_from(
    [b"editor", b"high", b"ds-coder-v2@2025-09-23", b"repo@sha," + b"a," * 300, b"\xff\xfe", b"no-cache"])


def send(proxy, content: bytes, headers: dict | None = None, path: str = "/v1/chat/completions") -> httpx.Response:
    h = {**proxy.headers(), "Content-Type": "application/json", **(headers or {})}
    with httpx.stream("POST", f"{proxy.base_url}{path}", content=content, headers=h, timeout=TIMEOUT) as r:
        r.read()
    return r


def assert_not_server_error(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:800]}"
    if r.status_code >= 400:
        assert r.json()["error"]["message"], r.text[:800]
    elif r.headers.get("content-type", "").startswith("text/event-stream"):
        assert '"code": "5' not in r.text and '"code":"5' not in r.text, r.text[-800:]


@FUZZ
@given(body=bodies)
def test_fuzzed_chat_bodies_never_5xx(proxy, body):
    assert_not_server_error(send(proxy, json.dumps(body).encode()))


@pytest.mark.parametrize("content", [[None], [{"text": "no type"}], {"type": "text", "text": "x"}, 42],
                         ids=["null-part", "untyped-part", "object", "number"])
def test_malformed_content_is_400_naming_the_field(proxy, content):
    body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "ok"}, {"role": "user", "content": content}]}
    r = send(proxy, json.dumps(body).encode())
    assert r.status_code == 400, r.text
    assert "messages[1].content" in r.json()["error"]["message"]


CALL = {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a.py"}'}}


@pytest.mark.parametrize(("message", "field"), [
    ({"role": "user", "content": "", "tool_calls": [CALL]}, "messages[1].tool_calls"),
    ({"role": "assistant", "content": None, "tool_calls": CALL}, "messages[1].tool_calls"),
    ({"role": "assistant", "content": None, "tool_calls": [{**CALL, "function": {"name": "", "arguments": "{}"}}]},
     "messages[1].tool_calls[0].function"),
    ({"role": "assistant", "content": None, "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{x"}}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"role": "assistant", "content": None, "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {}}}]},
     "messages[1].tool_calls[0].function.arguments"),
], ids=["on-user", "not-a-list", "no-name", "arguments-not-json", "arguments-object"])
def test_malformed_tool_calls_are_400_naming_the_field(proxy, message, field):
    """Routed to the Ollama deployment (carrot-editor), whose converter would fail on them upstream-side."""
    body = {"model": "carrot-editor", "messages": [{"role": "user", "content": "hi"}, message]}
    r = send(proxy, json.dumps(body).encode())
    assert r.status_code == 400, r.text
    assert f"'{field}'" in r.json()["error"]["message"]


USER = {"role": "user", "content": "a"}


@pytest.mark.parametrize("model", ["carrot-editor", "gpt-4o"], ids=["ollama", "ollama-with-vllm-fallback"])
@pytest.mark.parametrize(("message", "field", "says"), [
    ({"role": "assistant", "content": [{"type": "weird"}]}, "messages[2].content[0]", "assistant messages cannot"),
    ({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, "messages[2].content[0]",
     "system messages cannot"),
    ({"role": "tool", "tool_call_id": "c", "content": [{"type": "weird"}]}, "messages[2].content[0]", "tool messages"),
    ({"role": "user", "content": [{"type": "image_url", "image_url": 5}]}, "messages[2].content[0].image_url",
     "a URL string or an object"),
    ({"role": "user", "content": [{"type": "image_url"}]}, "messages[2].content[0].image_url", "a URL string"),
    ({"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}, "messages[2].content[0]",
     "(ollama_chat) cannot take"),
    ({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]},
     "messages[2].content[0]", "(ollama_chat) cannot take"),
    ({"role": "user", "content": [{"type": "document", "source": {}}]}, "messages[2].content[0]", "cannot take"),
    ({"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "custom", "custom": {
        "name": "x", "input": "y"}}]}, "messages[2].tool_calls[0]", "(ollama_chat) cannot take"),
    ({"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "web", "web": {}}]},
     "messages[2].tool_calls[0]", "function or custom"),
    ({"role": "assistant", "content": None, "function_call": "x"}, "messages[2].function_call", "non-empty 'name'"),
], ids=["assistant-unknown-part", "system-image", "tool-unknown-part", "image-url-number", "image-url-missing",
        "refusal-on-ollama", "audio-on-ollama", "document-on-ollama", "custom-call-on-ollama", "unknown-call",
        "function-call-string"])
def test_content_a_role_or_the_route_cannot_carry_is_400_naming_it(proxy, fake_upstream, marker, model, message,
                                                                    field, says):
    """LiteLLM's Ollama conversion failed on these before sending: a 502 "could not be reached", or on an alias
    with a fallback a silent answer from the fallback, counted as the upstream's failure."""
    body = {"model": model, "messages": [{"role": "user", "content": f"hi {marker}"}, USER, message, USER]}
    r = send(proxy, json.dumps(body).encode())
    assert r.status_code == 400, r.text
    assert f"'{field}'" in r.json()["error"]["message"] and says in r.json()["error"]["message"], r.text
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize(("model", "message"), [
    ("ds-coder-v2-vllm", {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}),
    ("ds-coder-v2-vllm", {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}]}),
    ("carrot-editor", {"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}),
    ("carrot-editor", {"role": "assistant", "content": [{"type": "text", "text": "x"}], "function_call": {"name": "f"}}),
], ids=["refusal-on-vllm", "custom-call-on-vllm", "image-url-string-on-ollama", "function-call-on-ollama"])
def test_content_the_route_carries_is_served(proxy, fake_upstream, marker, model, message):
    body = {"model": model, "messages": [{"role": "user", "content": f"hi {marker}"}, message, USER]}
    r = send(proxy, json.dumps(body).encode())
    assert r.status_code == 200, r.text
    assert len(fake_upstream.find(marker)) == 1


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
@pytest.mark.parametrize(("extra", "field"), [({"metadata": {"guardrails": 5}}, "metadata.guardrails"),
                                              ({"guardrails": 5}, "guardrails")], ids=["in-metadata", "top-level"])
def test_a_malformed_guardrails_field_is_400_naming_where_it_was_sent(proxy, path, extra, field):
    body = ({"model": "carrot-editor", "input": "hi"} if path == "/v1/responses" else
            {"model": "carrot-editor", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    r = send(proxy, json.dumps({**body, **extra}).encode(), {"anthropic-version": "2023-06-01"}, path=path)
    assert r.status_code == 400, r.text
    assert f"Field '{field}' must be a list" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("arguments", ['{"path": "a.py"}', "", None], ids=["json", "empty", "absent"])
def test_a_tool_call_history_is_served_with_empty_arguments_as_an_empty_object(proxy, fake_upstream, marker, arguments):
    """`arguments: ""` is what several models return for a call without parameters; clients keep it."""
    call = {**CALL, "function": {"name": "read_file", **({} if arguments is None else {"arguments": arguments})}}
    body = {"model": "carrot-editor", "messages": [
        {"role": "user", "content": f"{marker} open a.py", "tool_calls": []},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "print(1)"}, {"role": "user", "content": "explain it"}]}
    assert send(proxy, json.dumps(body).encode()).status_code == 200
    turn = next(m for m in fake_upstream.find(marker)[-1].json["messages"] if m.get("tool_calls"))
    sent = turn["tool_calls"][0]["function"]["arguments"]  # Ollama's format carries an object
    assert (json.loads(sent) if isinstance(sent, str) else sent) == (json.loads(arguments) if arguments else {})


@FUZZ
@given(body=st.fixed_dictionaries({"model": st.sampled_from(["gpt-4o", "carrot-editor"]) | scalars,
                                   "prompt": text | st.lists(text | st.integers(), max_size=3) | json_values},
                                  optional={"suffix": text | scalars, "stream": st.booleans(),
                                            "max_tokens": st.integers() | scalars, "echo": scalars}))
def test_fuzzed_completion_bodies_never_5xx(proxy, body):
    assert_not_server_error(send(proxy, json.dumps(body).encode(), path="/v1/completions"))


@FUZZ
@given(headers=st.dictionaries(header_names, header_values, max_size=4))
def test_fuzzed_headers_never_5xx(proxy, headers):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    try:
        r = send(proxy, json.dumps(body).encode(), {k: v for k, v in headers.items() if k != "Content-Length"})
    except httpx.LocalProtocolError:
        return  # the client itself refuses to send it (e.g. a header value httpx rejects)
    assert_not_server_error(r)


@FUZZ
@given(raw=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_fuzzed_raw_bytes_never_5xx(proxy, raw):
    assert_not_server_error(send(proxy, raw))


INVALID_UTF8 = [
    b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xff\xfe\xc3\x28 bad"}]}',
    b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "lone surrogate \\ud800"}]}',
    b'{"model": "\xc0\xaf", "messages": [{"role": "\xed\xa0\x80", "content": "x"}]}',
    b"\xef\xbb\xbf{\"model\": \"gpt-4o\", \"messages\": [{\"role\": \"user\", \"content\": \"bom\"}]}",
]


@pytest.mark.parametrize("raw", INVALID_UTF8, ids=["bad-bytes", "lone-surrogate", "overlong-role", "bom"])
def test_invalid_utf8_is_4xx_or_served(proxy, raw):
    assert_not_server_error(send(proxy, raw))


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [100, 5_000, 50_000])
def test_deep_nesting_never_5xx(proxy, depth):
    raw = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "x", "extra": ' + _nested(depth) + "}]}"
    assert_not_server_error(send(proxy, raw.encode()))
    listy = '{"model": "gpt-4o", "messages": ' + "[" * depth + "]" * depth + "}"
    assert_not_server_error(send(proxy, listy.encode()))


def test_ten_thousand_messages(proxy, fake_upstream, marker):
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(10_000)]
    msgs[-1] = {"role": "user", "content": f"last {marker}"}
    r = send(proxy, json.dumps({"model": "gpt-4o", "messages": msgs}).encode())
    assert_not_server_error(r)
    if r.status_code == 200:
        assert len(fake_upstream.find(marker)[-1].json["messages"]) >= 10_000


LIMIT = 2_097_152  # policy/routing.yaml max_body_bytes


def body_of(marker: str, unit: str, size: int) -> tuple[bytes, str]:
    """A chat body of about `size` bytes (at most `size`) whose user content is `marker` + `unit` repeated."""
    empty = len(json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": marker}]}))
    content = marker + unit * ((size - empty) // len(json.dumps(unit)[1:-1]))  # é is sent as \u00e9: 6 bytes
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}).encode(), content


@pytest.mark.parametrize("unit,size", [(" word", LIMIT), (" word", 3_000_000), ("é", 3_000_000)],
                         ids=["ascii-just-under-limit", "ascii-3mb", "escaped-3mb"])
def test_huge_string(proxy, fake_upstream, marker, unit, size):
    body, content = body_of(marker, unit, size)
    assert size - 6 <= len(body) <= size
    r = send(proxy, body)
    assert_not_server_error(r)
    if len(body) > LIMIT:
        assert r.status_code == 413 and fake_upstream.find(marker) == [], r.text[:300]
    else:
        assert r.status_code == 200, r.text[:300]
        assert [m["content"] for m in fake_upstream.find(marker)[-1].json["messages"] if m["role"] == "user"] == [content]


def test_huge_header_is_rejected_cleanly(proxy):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode()
    try:
        r = send(proxy, body, {"X-Context-Refs": "repo@sha," + "p," * 60_000})
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        return  # the server refused the oversized header block by closing or resetting: no 500, no hang
    assert_not_server_error(r)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_content_array_with_images_and_tool_calls(proxy, fake_upstream, marker, stream):
    msgs = [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [{"type": "text", "text": f"what is this {marker}"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "a.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "def f(): pass"},
        {"role": "user", "content": "and now?"},
    ]
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}}}}}]
    r = send(proxy, json.dumps({"model": "gpt-4o", "messages": msgs, "tools": tools, "stream": stream}).encode())
    assert_not_server_error(r)
    assert r.status_code == 200, r.text[:500]
    assert fake_upstream.find(marker)
