"""End to end through the real proxy: routing, prompt packs, pins, headers, bad input, FIM."""

from __future__ import annotations

import json
import socket

import httpx
import openai
import pytest
import yaml

from carrot_hooks.prompts import load_pack
from carrot_hooks.serve import ROOT
from tests.conftest import DEAD
from tests.fake_upstream import Reply
from tests.services import wait_for

PACKS = {
    "editor": "editor@v1", "refactor": "refactor_hook@v1", "tests": "explain_tests@v1", "chat": "chat@v1",
    "rag-code": "rag_code@v1", "rag-doc": "rag_doc@v1", "ci": "ci_review@v1",
}
SMALL = "deepseek-coder:6.7b-instruct-q4_K_M"
V2 = "deepseek-coder-v2:16b-lite-instruct-q4_K_M"
TASK_MODEL = {"editor": SMALL, "ci": SMALL, "refactor": V2, "tests": V2, "chat": V2, "rag-code": V2, "rag-doc": V2}


def pack_body(ref: str) -> str:
    return load_pack(ROOT / "prompts" / f"{ref}.md").body


def chat(client, marker, *, headers=None, model="gpt-4o", stream=False, **kw):
    """One chat call; returns (raw response, text). Streams are read to the end."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=kw.pop("messages", [{"role": "user", "content": f"question {marker}"}]),
        extra_headers=headers or {}, stream=stream, **kw)
    body = raw.parse()
    if stream:
        return raw, "".join(c.choices[0].delta.content or "" for c in body if c.choices)
    return raw, body.choices[0].message.content


def only_request(fake, marker):
    reqs = fake.find(marker)
    assert len(reqs) == 1, f"expected one upstream request with {marker}, got {len(reqs)}"
    return reqs[0]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("task", sorted(PACKS))
def test_task_type_routes_and_injects_pack(client, fake_upstream, marker, task, stream):
    raw, text = chat(client, marker, headers={"X-Task-Type": task}, stream=stream,
                     messages=[{"role": "system", "content": f"client rules {marker}"},
                               {"role": "user", "content": f"question {marker}"}])
    assert text == "Hello from the fake upstream."
    up = only_request(fake_upstream, marker)
    assert up.path == "/api/chat"
    assert up.json["model"] == TASK_MODEL[task]
    msgs = up.json["messages"]
    assert (msgs[0]["role"], msgs[0]["content"]) == ("system", pack_body(PACKS[task]))
    assert msgs[1]["role"] == "system" and msgs[1]["content"] == f"client rules {marker}"
    assert msgs[-1]["content"] == f"question {marker}"  # rag tasks put a context block in between
    assert raw.headers["x-carrot-prompt-pack"] == PACKS[task]
    assert raw.headers["x-carrot-task-type"] == task
    assert raw.headers["x-carrot-model"] == ("ds-coder-6.7b" if TASK_MODEL[task] == SMALL else "ds-coder-v2")
    assert raw.headers["x-carrot-route"] in {"small-model-tasks", "default-v2"}


def test_a_stream_has_one_id(client, fake_upstream, marker):
    """OpenAI clients key a streamed answer by its id; LiteLLM gives each Ollama chunk a new one."""
    fake_upstream.script(Reply(match=marker, content="one answer in many small chunks", chunk_chars=4))
    chunks = list(client.chat.completions.create(model="carrot-chat", stream=True,
                                                 messages=[{"role": "user", "content": marker}]))
    assert len(chunks) > 3 and len({c.id for c in chunks}) == 1, [c.id for c in chunks]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one answer in many small chunks"


def test_no_headers_defaults_to_chat_on_v2(client, fake_upstream, marker):
    raw, _ = chat(client, marker, model="auto")
    assert raw.headers["x-carrot-route"] == "default-v2"
    assert raw.headers["x-carrot-task-type"] == "chat"
    assert only_request(fake_upstream, marker).json["model"] == V2


@pytest.mark.parametrize("virtual,task", [("carrot-ci", "ci"), ("carrot-rag-doc", "rag-doc"),
                                          ("carrot-editor", "editor")])
def test_virtual_model_names_pick_task(client, fake_upstream, marker, virtual, task):
    raw, _ = chat(client, marker, model=virtual)
    assert raw.headers["x-carrot-task-type"] == task
    assert only_request(fake_upstream, marker).json["messages"][0]["content"] == pack_body(PACKS[task])


def test_header_wins_over_virtual_model(client, fake_upstream, marker):
    raw, _ = chat(client, marker, model="carrot-editor", headers={"X-Task-Type": "refactor"})
    assert raw.headers["x-carrot-task-type"] == "refactor"
    assert only_request(fake_upstream, marker).json["model"] == V2


def test_models_endpoint_lists_virtual_models_and_pins(client):
    ids = {m.id for m in client.models.list()}
    assert {f"carrot-{t}" for t in PACKS} <= ids
    assert {"ds-coder-6.7b", "ds-coder-v2", "ds-coder-v2@2025-09-23", "alt-reasoning"} <= ids


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_pin_by_header(client, fake_upstream, marker, stream):
    raw, _ = chat(client, marker, headers={"X-Model-Alias": "ds-coder-v2@2025-06-10"}, stream=stream)
    assert raw.headers["x-carrot-model"] == "ds-coder-v2@2025-06-10"
    assert raw.headers["x-carrot-route"] == "client-choice"
    assert only_request(fake_upstream, marker).json["model"] == "deepseek-coder-v2:16b-lite-instruct-q4_0"


def test_pin_by_model_field(client, fake_upstream, marker):
    raw, _ = chat(client, marker, model="ds-coder-6.7b@2025-03-01")
    assert raw.headers["x-carrot-model"] == "ds-coder-6.7b@2025-03-01"
    assert only_request(fake_upstream, marker).json["model"] == "deepseek-coder:6.7b-instruct-q4_0"


def test_known_alias_is_honoured(client, fake_upstream, marker):
    raw, _ = chat(client, marker, model="ds-coder-6.7b", headers={"X-Task-Type": "refactor"})
    assert raw.headers["x-carrot-model"] == "ds-coder-6.7b"
    assert only_request(fake_upstream, marker).json["model"] == SMALL


def test_high_risk_overrides_client_choice(client, fake_upstream, marker):
    raw, _ = chat(client, marker, model="ds-coder-6.7b", headers={"X-Risk-Level": "high"})
    assert raw.headers["x-carrot-route"] == "high-risk-escalation"
    assert raw.headers["x-carrot-model"] == "alt-reasoning"
    up = only_request(fake_upstream, marker)
    assert up.path == "/v1/chat/completions" and up.json["model"] == "gpt-4.1"
    assert up.headers["Authorization"] == "Bearer sk-fake-alt"


def test_high_risk_ci_needs_human_review(client, fake_upstream, marker):
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat(client, marker, headers={"X-Task-Type": "ci", "X-Risk-Level": "high"})
    assert "ci-high-risk-human-review" in str(e.value) and "human review" in str(e.value)
    assert fake_upstream.find(marker) == []


def test_large_prompt_goes_to_bigger_model(client, fake_upstream, marker):
    big = "def f(x):\n    return x + 1\n" * 700  # ~7,000 tokens
    raw, _ = chat(client, marker, headers={"X-Task-Type": "editor"},
                  messages=[{"role": "user", "content": f"{marker}\n{big}"}])
    assert raw.headers["x-carrot-route"] == "large-prompt"
    assert only_request(fake_upstream, marker).json["model"] == V2


@pytest.mark.parametrize("header,value,expect", [
    ("X-Task-Type", "poetry", "editor, rag-code, rag-doc, refactor, tests"),
    ("X-Risk-Level", "extreme", "low, med, high"),
    ("X-Model-Alias", "ds-coder-v2@1999-01-01", "ds-coder-v2@2025-09-23"),
    ("X-Context-Refs", "bad repo name!", "repo@sha,path"),
])
def test_bad_header_is_400_naming_it(client, fake_upstream, marker, header, value, expect):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, marker, headers={header: value})
    assert e.value.status_code == 400
    assert header in str(e.value) and expect in str(e.value)
    assert fake_upstream.find(marker) == []


def post(proxy, path, content, headers=None):
    return httpx.post(f"{proxy.base_url}{path}", content=content, timeout=60,
                      headers={**proxy.headers(), "Content-Type": "application/json", **(headers or {})})


@pytest.mark.parametrize("body,status,needle", [
    (b'{"model": "x", "messages": [', 400, "JSON"),
    (b'{"model": "x"}', 400, "messages"),
    (b'{"model": "x", "messages": "hello"}', 400, "messages"),
    (b'{"model": "x", "messages": [42]}', 400, "messages[0]"),
    (b'[1, 2, 3]', 400, ""),
])
def test_bad_body_is_4xx_not_500(proxy, body, status, needle):
    r = post(proxy, "/v1/chat/completions", body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_body_over_limit_is_413(proxy, fake_upstream, marker):
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": marker + "a" * 2_200_000}]})
    r = post(proxy, "/v1/chat/completions", body)
    assert r.status_code == 413
    assert "2097152" in r.json()["error"]["message"]
    assert fake_upstream.find(marker) == []


def test_declared_body_over_limit_is_413_before_reading_or_authentication(proxy):
    """Only the headers are sent, with a key that does not exist: the answer comes without the body being read."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer sk-wrong\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n")
        data = b""
        while b"bytes exceeds the limit" not in data:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    assert data.startswith(b"HTTP/1.1 413") and b"300000000 bytes exceeds the limit of 2097152 bytes" in data, data


@pytest.mark.parametrize("first,second", [("nope", "editor"), ("editor", "nope")])
def test_a_gateway_header_sent_twice_is_400_naming_it(proxy, fake_upstream, marker, first, second):
    body = json.dumps({"model": "carrot-chat", "messages": [{"role": "user", "content": marker}]})
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", content=body, timeout=60, headers=[
        *proxy.headers().items(), ("Content-Type", "application/json"), ("X-Task-Type", first), ("X-Task-Type", second)])
    assert r.status_code == 400 and "x-task-type was sent 2 times" in r.json()["error"]["message"], r.text
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/completions"])
def test_a_body_that_is_not_utf8_is_400_saying_so(proxy, path):
    body = b'{"model": "carrot-chat", "messages": [{"role": "user", "content": "caf\xe9 \xff\xfe"}]}'
    r = post(proxy, path, body, {"anthropic-version": "2023-06-01"})
    assert r.status_code == 400 and "not valid UTF-8 (byte 70)" in r.text, r.text


def test_a_fim_twin_is_not_found_under_models(proxy):
    r = httpx.get(f"{proxy.base_url}/v1/models/ds-coder-v2-fim", headers=proxy.headers(), timeout=60)
    assert r.status_code == 404 and "fill-in-the-middle" in r.text, r.text
    assert httpx.get(f"{proxy.base_url}/v1/models/ds-coder-v2", headers=proxy.headers(), timeout=60).status_code == 200


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_fim_completion_keeps_suffix(client, fake_upstream, marker, stream):
    raw = client.completions.with_raw_response.create(
        model="gpt-4o", prompt=f"# {marker}\ndef add(a, b):\n    ", suffix="\n\nprint(add(1, 2))\n",
        max_tokens=16, stream=stream)
    body = raw.parse()
    chunks = list(body) if stream else [body]
    text = "".join(c.choices[0].text or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    if stream:  # exactly one chunk, the completing one, carries the verdict summary, on FIM too
        verdicts = [c.model_extra["carrot_guardrails"] for c in chunks if "carrot_guardrails" in (c.model_extra or {})]
        assert verdicts == ["none"]
    up = only_request(fake_upstream, marker)
    assert up.path == "/v1/completions"
    assert up.json["model"] == "carrot-deepseek-coder-fim:6.7b-base-q4_K_M"
    assert up.json["suffix"] == "\n\nprint(add(1, 2))\n"
    assert up.json["prompt"] == f"# {marker}\ndef add(a, b):\n    "
    assert raw.headers["x-carrot-task-type"] == "editor"
    assert raw.headers["x-carrot-model"] == "ds-coder-6.7b"
    assert raw.headers["x-carrot-prompt-pack"] == "none"


BULK = "x = 1\n" * 1000  # > 3,000 tokens: the refactor-bulk-vllm rule


@pytest.mark.parametrize("kw,upstream_model,alias", [
    ({"extra_headers": {"X-Model-Alias": "ds-coder-6.7b@2025-03-01"}}, "carrot-deepseek-coder-fim:6.7b-base-q4_0",
     "ds-coder-6.7b@2025-03-01"),
    ({"model": "ds-coder-v2@2025-06-10"}, "deepseek-coder-v2:16b-lite-base-q4_0", "ds-coder-v2@2025-06-10"),
    ({"model": "ds-coder-v2@2025-09-23"}, "deepseek-coder-v2:16b-lite-base-q4_K_M", "ds-coder-v2@2025-09-23"),
    ({"extra_headers": {"X-Task-Type": "refactor"}, "bulk": True}, "deepseek-coder-v2:16b-lite-base-q4_K_M",
     "ds-coder-v2-vllm"),
], ids=["pin-header-6.7b-old", "pin-field-v2-old", "pin-field-v2", "refactor-bulk-on-vllm-route"])
def test_fim_keeps_suffix_on_every_route(client, fake_upstream, marker, kw, upstream_model, alias):
    prompt = f"# {marker}\n" + (BULK if kw.pop("bulk", False) else "") + "def f():\n    "
    raw = client.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-4o"), prompt=prompt, suffix="\nf()\n", max_tokens=8, **kw)
    raw.parse()
    up = only_request(fake_upstream, marker)
    assert (up.path, up.json["model"], up.json["suffix"]) == ("/v1/completions", upstream_model, "\nf()\n")
    assert "options" not in up.json
    assert raw.headers["x-carrot-model"] == alias


def test_fim_routed_to_a_model_without_fim_is_400(client, fake_upstream, marker):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gpt-4o", prompt=marker, suffix="x", extra_headers={"X-Risk-Level": "high"})
    assert "fill-in-the-middle" in str(e.value) and "high-risk-escalation" in str(e.value)
    assert "policy/routing.yaml: fim" in str(e.value) and "carrot-proxy-" not in str(e.value)  # no server path
    assert fake_upstream.find(marker) == []


def test_unknown_pin_in_model_field_is_400_listing_pins(client, fake_upstream, marker):
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, marker, model="ds-coder-v2@1999-01-01")
    assert "'model'" in str(e.value) and "ds-coder-v2@2025-09-23" in str(e.value)
    assert "-fim@" not in str(e.value)  # FIM twins are not client-choosable
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize("path,body", [
    ("/v1/responses", {"model": "ds-coder-v2", "input": "{marker}"}),
    ("/v1/messages", {"model": "ds-coder-v2", "max_tokens": 8, "messages": [{"role": "user", "content": "{marker}"}]}),
])
def test_agent_endpoints_are_routed_not_bypassed(proxy, fake_upstream, marker, path, body):
    """/v1/responses and /v1/messages go through routing and the pack (tests/test_agent_endpoints_e2e.py: all stages)."""
    r = post(proxy, path, json.dumps(body).replace("{marker}", marker))
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-route"] == "client-choice" and r.headers["x-carrot-prompt-pack"] == "chat@v1"
    up = only_request(fake_upstream, marker)
    assert up.json["model"] == V2 and up.system_messages[0] == pack_body("chat@v1")


def test_chunked_body_over_limit_is_413(proxy, fake_upstream, marker):
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": marker + "a" * 2_200_000}]}).encode()
    r = post(proxy, "/v1/chat/completions", iter([body[:1000], body[1000:]]))  # no Content-Length: chunked
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413, r.text
    assert "2097152" in r.json()["error"]["message"]
    assert fake_upstream.find(marker) == []


def test_fim_bad_header_is_400(client, marker):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="gpt-4o", prompt=marker, extra_headers={"X-Risk-Level": "x"})
    assert "X-Risk-Level" in str(e.value)


def _edit_routing(proxy, mutate) -> str:
    path = proxy.policy_dir / "routing.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    mutate(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return original


def _restore_routing(proxy, client, marker, original: str) -> None:
    """Put the shipped rules back and wait until the proxy serves them, so later tests see them."""
    (proxy.policy_dir / "routing.yaml").write_text(original)

    def shipped_rules_in_force():
        try:
            return (chat(client, marker, headers={"X-Task-Type": "editor"})[0].headers["x-carrot-route"]
                    == "small-model-tasks" and chat(client, marker, headers={"X-Task-Type": "tests"}))
        except openai.APIStatusError:
            return False

    assert wait_for(shipped_rules_in_force)


def test_routing_yaml_edit_applies_without_restart(proxy, client, fake_upstream, marker):
    def send_editor_to_v2(doc):
        doc["rules"].insert(0, {"id": "editor-to-v2", "when": {"task_type": ["editor"]}, "model": "ds-coder-v2"})

    original = _edit_routing(proxy, send_editor_to_v2)
    try:
        assert wait_for(lambda: chat(client, marker, headers={"X-Task-Type": "editor"})[0]
                         .headers["x-carrot-route"] == "editor-to-v2")
        assert fake_upstream.find(marker)[-1].json["model"] == V2
    finally:
        _restore_routing(proxy, client, marker, original)  # and the edit back is picked up too


def test_routing_edit_naming_an_unknown_model_keeps_last_valid_rules(proxy, client, fake_upstream, marker):
    path = proxy.policy_dir / "routing.yaml"
    original = _edit_routing(proxy, lambda doc: doc["rules"][-1].update(model="ds-coder-v3"))
    try:
        routes = []  # every request meanwhile is served by the last valid rules (the default rule → v2)
        assert wait_for(lambda: routes.append(chat(client, marker)[0].headers["x-carrot-route"])
                         or "'ds-coder-v3'" in proxy.log())
        assert set(routes) == {"default-v2"}
        assert {r.json["model"] for r in fake_upstream.find(marker)} == {V2}
        assert f"{path}: rules.5 (default-v2).model: unknown alias 'ds-coder-v3'" in proxy.log()
    finally:
        _restore_routing(proxy, client, marker, original)


def test_invalid_routing_edit_keeps_last_valid_rules(proxy, client, marker):
    path = proxy.policy_dir / "routing.yaml"

    def editor_route():
        return chat(client, marker, headers={"X-Task-Type": "editor"})[0].headers["x-carrot-route"]

    def send_editor_to_v2(doc):  # a valid edit first: the last valid version is not the shipped one
        doc["rules"].insert(0, {"id": "editor-to-v2", "when": {"task_type": ["editor"]}, "model": "ds-coder-v2"})

    def then_break_it(doc):
        send_editor_to_v2(doc)
        doc["rules"][3]["model"] = None
        doc["rules"][3]["when"]["min_tokens"] = "lots"

    original = _edit_routing(proxy, send_editor_to_v2)
    try:
        assert wait_for(lambda: editor_route() == "editor-to-v2")
        path.write_text(original)
        _edit_routing(proxy, then_break_it)
        routes = []
        assert wait_for(lambda: routes.append(editor_route())
                         or "rules.3.when.min_tokens (id 'large-prompt')" in proxy.log())
        routes += [editor_route() for _ in range(3)]  # after the rejected reload, too
        assert str(path) in proxy.log() and "'lots'" in proxy.log()
        assert set(routes) == {"editor-to-v2"}
    finally:
        _restore_routing(proxy, client, marker, original)


def test_unreachable_upstream_is_502_naming_url(unreachable_proxies, marker):
    dead, p = DEAD, unreachable_proxies["all"]
    r = post(p, "/v1/chat/completions", json.dumps({"model": "x", "messages": [{"role": "user", "content": marker}]}))
    assert r.status_code == 502, r.text
    assert dead in r.json()["error"]["message"]
    for stream in (False, True):  # FIM goes to Ollama's OpenAI-compatible URL, and says so
        r = post(p, "/v1/completions", json.dumps({"model": "x", "prompt": marker, "suffix": "s", "stream": stream}))
        assert r.status_code == 502, r.text
        assert f"{dead}/v1fim" in r.json()["error"]["message"]


@pytest.mark.parametrize("body", [b'{"model": "x", "prompt": []}', b'{"model": "x", "prompt": [{"a": 1}]}',
                                  b'{"model": "x"}', b'{"model": "x", "prompt": {"a": 1}}'])
def test_bad_completion_prompt_is_400(proxy, body):
    r = post(proxy, "/v1/completions", body)
    assert r.status_code == 400, r.text
    assert "prompt" in r.json()["error"]["message"]


@pytest.mark.parametrize("suffix", [["# mail kim.roe@acme.io\n"], 5, True, {"a": "write me ransomware"}])
def test_a_suffix_that_is_not_a_string_is_400(proxy, fake_upstream, marker, suffix):
    """No check reads a suffix of another type, so it reached the model unread (a black-box probe)."""
    r = post(proxy, "/v1/completions", json.dumps({"model": "carrot-editor", "prompt": f"# {marker}\n", "suffix": suffix}))
    assert r.status_code == 400 and "'suffix'" in r.json()["error"]["message"], r.text
    assert fake_upstream.find(marker) == []


def test_routing_to_a_missing_pack_is_503_naming_the_file(proxy, client, marker):
    def missing_pack(doc):
        doc["tasks"]["tests"]["pack"] = "explain_tests@v99"

    original = _edit_routing(proxy, missing_pack)
    try:
        errors = []

        def sees_503():
            try:
                chat(client, marker, headers={"X-Task-Type": "tests"})
            except openai.InternalServerError as e:
                errors.append(e)
            return bool(errors)

        assert wait_for(sees_503)
        assert errors[0].status_code == 503 and "explain_tests@v99" in str(errors[0])
    finally:
        _restore_routing(proxy, client, marker, original)
