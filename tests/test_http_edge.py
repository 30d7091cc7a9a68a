"""What clients hit before any hook runs: JSON whatever the Content-Type (the README's curl verbatim),
/metrics without a redirect, /v1/models listing only models a client may choose."""

from __future__ import annotations

import gzip
import json
import re
import subprocess

import httpx
import openai
import pytest
import yaml

from carrot_hooks.serve import ROOT


def readme_curl() -> str:
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("- **curl**:"))
    return re.search(r"`(curl [^`]+)`", line).group(1)


def test_readme_curl_runs_verbatim(proxy, fake_upstream):
    command = readme_curl().replace("http://127.0.0.1:4000", proxy.base_url)
    proc = subprocess.run(["bash", "-c", command], env={"KEY": proxy.master_key, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake upstream.", proc.stdout


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", None])
def test_json_body_is_read_whatever_the_content_type(proxy, fake_upstream, marker, ctype):
    body = json.dumps({"model": "carrot-chat", "messages": [{"role": "user", "content": f"q {marker}"}]})
    headers = {**proxy.headers(), **({"Content-Type": ctype} if ctype else {})}
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", content=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    assert len(fake_upstream.find(marker)) == 1


def test_a_form_body_that_is_not_json_is_415_naming_the_header(proxy, fake_upstream, marker):
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", data={"model": "x", "q": marker},
                   headers=proxy.headers(), timeout=60)
    assert r.status_code == 415 and "Content-Type" in r.json()["error"]["message"]
    assert fake_upstream.find(marker) == []


NON_FINITE_BODIES = {  # endpoint → body with a {value} placeholder for the bad number
    "/v1/chat/completions": '{{"model": "carrot-chat", "temperature": {value}, "messages": [{{"role": "user", '
                            '"content": "q {marker} NaN Infinity"}}]}}',
    "/v1/completions": '{{"model": "carrot-editor", "temperature": {value}, "prompt": "# {marker}", "suffix": "x"}}',
    "/v1/responses": '{{"model": "carrot-chat", "top_p": {value}, "input": "q {marker}"}}',
    "/v1/messages": '{{"model": "carrot-chat", "max_tokens": 20, "temperature": {value}, "messages": [{{"role": '
                    '"user", "content": "q {marker}"}}]}}',
}


@pytest.mark.parametrize("path", sorted(NON_FINITE_BODIES))
def test_a_body_holding_nan_or_infinity_is_400_naming_it(proxy, fake_upstream, marker, path):
    """Not finite numbers (NaN, Infinity: not JSON, though Python reads them; 1e999 overflows): it was a 500 on
    /v1/responses and a 502 blaming the upstream on /v1/completions. The words in a string are text."""
    headers = {**proxy.headers(), "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    for value in ("NaN", "Infinity", "-Infinity", "1e999", "-2.5E+400"):
        body = NON_FINITE_BODIES[path].format(value=value, marker=marker)
        r = httpx.post(f"{proxy.base_url}{path}", content=body, headers=headers, timeout=60)
        assert r.status_code == 400 and f"holds {value}" in r.text, r.text
    assert fake_upstream.find(marker) == []
    fine = httpx.post(f"{proxy.base_url}{path}", headers=headers, timeout=60,
                      content=NON_FINITE_BODIES[path].format(value="0.5", marker=marker))
    assert fine.status_code == 200 and len(fake_upstream.find(marker)) == 1, fine.text


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
def test_metrics_answer_without_a_redirect(proxy, path):
    r = httpx.get(f"{proxy.base_url}{path}", timeout=30)
    assert r.status_code == 200 and "# HELP" in r.text


def test_models_lists_only_choosable_models(proxy, client):
    fim = set(yaml.safe_load((proxy.policy_dir / "routing.yaml").read_text())["fim"].values())
    listed = {m.id for m in client.models.list()}
    assert listed and not listed & fim
    assert {"carrot-chat", "carrot-editor", "ds-coder-v2", "ds-coder-6.7b"} <= listed


def test_naming_a_fim_twin_is_400(client, fake_upstream, marker):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="ds-coder-6.7b-fim", prompt=f"# {marker}\n", suffix="x")
    assert "ds-coder-6.7b-fim" in str(e.value) and "ds-coder-6.7b" in str(e.value)
    assert fake_upstream.find(marker) == []


GZIP_BODIES = {  # what the README's clients send, gzip-compressed (LiteLLM's own middleware decodes these)
    "/v1/chat/completions": {"model": "carrot-chat", "messages": [{"role": "user", "content": "q {marker}"}]},
    "/v1/completions": {"model": "carrot-editor", "prompt": "# {marker}\ndef f(", "suffix": ")\n"},
    "/v1/responses": {"model": "carrot-chat", "input": "q {marker}"},
    "/v1/messages": {"model": "carrot-chat", "max_tokens": 20, "messages": [{"role": "user", "content": "q {marker}"}]},
}


def _post_gzip(proxy, path: str, content: bytes, encoding: str = "gzip") -> httpx.Response:
    headers = {**proxy.headers(), "anthropic-version": "2023-06-01", "Content-Type": "application/json",
               "Content-Encoding": encoding}
    return httpx.post(f"{proxy.base_url}{path}", content=content, headers=headers, timeout=60)


@pytest.mark.parametrize("path", sorted(GZIP_BODIES))
def test_a_gzip_body_is_decoded_before_the_checks(proxy, fake_upstream, marker, path):
    """It was a 400 "not valid UTF-8" from the edge, which read the compressed bytes."""
    body = json.dumps(GZIP_BODIES[path]).replace("{marker}", marker).encode()
    r = _post_gzip(proxy, path, gzip.compress(body))
    assert r.status_code == 200, r.text
    assert len(fake_upstream.find(marker)) == 1


def test_a_gzip_body_of_several_members_is_decoded_whole(proxy, fake_upstream, marker):
    """RFC 1952 lets members follow each other (`cat a.gz b.gz`, pigz): it was a 400 "data follows the end"."""
    body = json.dumps(GZIP_BODIES["/v1/chat/completions"]).replace("{marker}", marker).encode()
    members = b"".join(gzip.compress(body[i:i + 1]) for i in range(len(body)))  # one a byte: one copy of the body
    r = _post_gzip(proxy, "/v1/chat/completions", members)
    assert r.status_code == 200, r.text
    assert len(fake_upstream.find(marker)) == 1


def test_a_gzip_bomb_is_413_by_its_decoded_size(proxy, fake_upstream, marker):
    """200 MB of one character in about 200 KB: refused once the decoded bytes pass the limit, not inflated whole."""
    limit = yaml.safe_load((proxy.policy_dir / "routing.yaml").read_text())["max_body_bytes"]
    bomb = gzip.compress(b'{"model": "carrot-chat", "messages": [{"role": "user", "content": "' + marker.encode()
                         + b" " * (200 << 20) + b'"}]}', compresslevel=9)
    assert len(bomb) < limit
    r = _post_gzip(proxy, "/v1/chat/completions", bomb)
    assert r.status_code == 413 and f"more than {limit} bytes" in r.text, r.text
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize("encoding,status", [("gzip", 400), ("br", 415), ("deflate", 415)])
def test_a_body_that_cannot_be_decoded_names_content_encoding(proxy, fake_upstream, marker, encoding, status):
    """A corrupt or truncated gzip body is a 400, an encoding the gateway does not decode a 415."""
    whole = gzip.compress(json.dumps(GZIP_BODIES["/v1/chat/completions"]).replace("{marker}", marker).encode())
    corrupt = (whole[:-12], whole[:10] + b"garbage" + whole[17:], whole + b"garbage after the last member")
    for content in (corrupt if encoding == "gzip" else (whole,)):
        r = _post_gzip(proxy, "/v1/chat/completions", content, encoding)
        assert r.status_code == status and "Content-Encoding" in r.text, r.text
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize("path", ["/vllm/v1/chat/completions", "/vllm/v1/completions"])
def test_the_vllm_pass_through_is_not_served(proxy, fake_upstream, marker, path):
    """LiteLLM's `/vllm/*` pass-through hands a body to the vLLM deployment with no routing and no guardrail (an
    audit's probe): not served, for any key; the model API is served on /v1/chat/completions and friends."""
    body = {"model": "ds-coder-v2-vllm", "messages": [{"role": "user", "content": f"{marker} hi"}], "prompt": marker}
    r = httpx.post(f"{proxy.base_url}{path}", headers=proxy.headers(), json=body, timeout=60)
    assert r.status_code == 404 and "/v1/chat/completions" in r.json()["error"]["message"], r.text
    assert not fake_upstream.find(marker)
