"""API keys through the real proxy: missing or wrong keys are 401 and never reach the upstream;
the master key and static tenant keys (policy/keys.yaml, by SHA-256) are served."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import openai
import pytest
import yaml

from carrot_hooks.auth import KeysPolicy, TenantKey, decide
from carrot_hooks.litellm_compat import ProxyException
from tests.services import wait_for

WRONG_KEYS = ["sk-" + "0" * 48, "not-even-sk", "Bearer", "sk-" + "x" * 5000, "sk-ünïcödé"]


def _post(proxy, headers: dict, marker: str, path="/v1/chat/completions"):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {marker}"}]}
    if path == "/v1/completions":
        body = {"model": "gpt-4o", "prompt": marker}
    return httpx.post(f"{proxy.base_url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/chat/completions"])
def test_missing_key_is_401_and_never_upstream(proxy, fake_upstream, marker, path):
    r = _post(proxy, {}, marker, path)
    assert r.status_code == 401, r.text
    assert "Authorization" in r.json()["error"]["message"]
    assert fake_upstream.find(marker) == []


@pytest.mark.parametrize("key", WRONG_KEYS, ids=["sk-zeros", "no-sk", "bare-bearer", "huge", "unicode"])
def test_wrong_key_is_401_and_never_upstream(proxy, fake_upstream, marker, key):
    headers = {"Authorization": f"Bearer {key}".encode()}  # raw UTF-8 bytes for the non-ASCII key
    r = _post(proxy, headers, marker)
    assert r.status_code == 401, r.text
    assert fake_upstream.find(marker) == []
    if len(key) > 8:
        assert key not in r.text


def test_wrong_key_via_openai_sdk_is_authentication_error(proxy, fake_upstream, marker):
    bad = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-" + "1" * 48, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": marker}])
    assert e.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert fake_upstream.find(marker) == []


def test_wrong_key_streaming_is_401(proxy, fake_upstream, marker):
    bad = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key="sk-" + "2" * 48, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o", stream=True, messages=[{"role": "user", "content": marker}])
    assert fake_upstream.find(marker) == []


def test_master_key_still_served_and_liveness_public(proxy, client, fake_upstream, marker):
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": marker}])
    assert r.choices[0].message.content == "Hello from the fake upstream."
    assert len(fake_upstream.find(marker)) == 1
    assert httpx.get(f"{proxy.base_url}/health/liveliness", timeout=10).status_code == 200


def write_keys(proxy, keys: dict[str, dict]) -> None:
    """Write `key -> {tenant, alias?, metadata?}` into the proxy's live policy/keys.yaml, by SHA-256."""
    doc = {"keys": [{"sha256": hashlib.sha256(k.encode()).hexdigest(), **v} for k, v in keys.items()]}
    (proxy.policy_dir / "keys.yaml").write_text(yaml.safe_dump(doc))


def wait_until_accepted(proxy, key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{proxy.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        if r.status_code == 200:
            return
        time.sleep(0.3)
    raise AssertionError(f"key not accepted within {timeout}s; last answer {r.status_code} {r.text[:200]}")


def test_static_tenant_key_served_with_its_metadata(proxy, fake_upstream, marker):
    key = "sk-tenant-ci-" + marker
    write_keys(proxy, {key: {"tenant": "team-ci", "alias": "ci-bot", "metadata": {"task_type": "ci"}}})
    wait_until_accepted(proxy, key)
    ci = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=key, max_retries=0, timeout=30)
    raw = ci.chat.completions.with_raw_response.create(model="gpt-4o",
                                                       messages=[{"role": "user", "content": marker}])
    assert raw.headers["x-carrot-task-type"] == "ci"  # the key's metadata picked the task type
    assert len(fake_upstream.find(marker)) == 1
    keys_text = (proxy.policy_dir / "keys.yaml").read_text()
    assert key not in keys_text
    r = _post(proxy, {"Authorization": f"Bearer {key}x"}, marker + "-2")
    assert r.status_code == 401 and fake_upstream.find(marker + "-2") == []


def test_plain_tenant_key_never_in_logs_or_metrics(proxy, fake_upstream, marker):
    key = f"tenant-plain-{marker}-{marker[::-1]}"  # no sk- prefix
    write_keys(proxy, {key: {"tenant": "team-plain", "alias": "plain"}})
    wait_until_accepted(proxy, key)
    c = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=key, max_retries=0, timeout=30)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": marker}])
    metrics = httpx.get(f"{proxy.base_url}/metrics", timeout=30, follow_redirects=True).text
    assert 'team="team-plain"' in metrics or "team-plain" in metrics
    assert key not in metrics and key not in proxy.log()


def test_invalid_keys_edit_keeps_last_valid_keys(proxy, marker):
    key = "sk-tenant-keep-" + marker
    write_keys(proxy, {key: {"tenant": "team-keep"}})
    wait_until_accepted(proxy, key)
    seen = len(proxy.log())
    (proxy.policy_dir / "keys.yaml").write_text(yaml.safe_dump({"keys": [{"sha256": "nothex", "tenant": ""}]}))

    def models() -> httpx.Response:
        return httpx.get(f"{proxy.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)

    proxy.wait_log("keys.yaml: keys.0.sha256", after=seen, probe=models)  # the edit was read and rejected
    assert models().status_code == 200
    assert "keys.yaml: keys.0.sha256" in proxy.log()
    write_keys(proxy, {})


# --- the decision itself, for the DB-connected branch the suite cannot start (no Prisma engines) ---

TEAM_A = KeysPolicy(keys=[TenantKey(sha256=hashlib.sha256(b"sk-team-a").hexdigest(), tenant="a")])


def team_a_keys() -> KeysPolicy:
    return TEAM_A


def test_decide_hands_unknown_keys_to_litellm_when_db_connected():
    assert decide("/v1/chat/completions", "sk-virtual", master_key="sk-m", keys=team_a_keys, db_connected=True) == "sk-virtual"


def test_decide_master_key_goes_to_litellm_checks():
    assert decide("/v1/models", "sk-m", master_key="sk-m", keys=team_a_keys, db_connected=False) == "sk-m"


@pytest.mark.parametrize("key", ["sk-team-a", "plain-team-key"])
def test_decide_tenant_key_becomes_team_without_keeping_the_key(key):
    policy = KeysPolicy(keys=[TenantKey(sha256=hashlib.sha256(key.encode()).hexdigest(), tenant="a")])
    auth = decide("/v1/models", key, master_key="sk-m", keys=lambda: policy, db_connected=False)
    assert auth.team_id == "a" and auth.token == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(auth.model_dump(mode="json"), default=str)


def test_decide_master_key_never_reads_the_keys_file():
    def broken():
        raise ValueError("unreadable keys file")

    assert decide("/v1/models", "sk-m", master_key="sk-m", keys=broken, db_connected=False) == "sk-m"


@pytest.mark.parametrize("key", ["", "  ", None, "sk-other"])
def test_decide_refuses_without_db(key):
    with pytest.raises(Exception) as e:
        decide("/v1/chat/completions", key, master_key="sk-m", keys=team_a_keys, db_connected=False)
    assert getattr(e.value, "code", None) == "401"


@pytest.mark.parametrize("route", ["/anthropic/v1/messages", "/key/generate", "/v1/embeddings", "/openai/chat/completions"])
def test_decide_keeps_tenant_keys_to_the_model_api(route):
    """Pass-through and admin routes would skip routing and guardrails: 403 naming the route."""
    key = "sk-tenant-" + "a" * 40
    policy = KeysPolicy(keys=[TenantKey(sha256=hashlib.sha256(key.encode()).hexdigest(), tenant="team-a")])
    with pytest.raises(ProxyException) as err:
        decide(route, key, master_key="sk-m", keys=lambda: policy, db_connected=False)
    assert str(err.value.code) == "403" and route in err.value.message
    for served in ("/v1/chat/completions", "/v1/messages/count_tokens"):  # Claude Code counts its context
        assert decide(served, key, master_key="sk-m", keys=lambda: policy, db_connected=False).team_id == "team-a"


def _requests_counted(proxy, status: str) -> float:
    text = httpx.get(f"{proxy.base_url}/metrics", timeout=30, follow_redirects=True).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("carrot_requests_total{") and f'status="{status}"' in ln)


@pytest.mark.parametrize("status,headers", [
    (401, {"Authorization": "Bearer sk-" + "3" * 48}),
    (403, None),  # a known key asking for high-risk CI, which the routing policy refuses
], ids=["401-wrong-key", "403-refused"])
def test_refusals_are_counted_with_their_status_and_are_no_upstream_attempt(proxy, fake_upstream, marker, status,
                                                                             headers):
    before = _requests_counted(proxy, str(status))
    body = {"model": marker, "messages": [{"role": "user", "content": f"question {marker}"}]}
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", json=body, timeout=30,
                   headers=headers or {**proxy.headers(), "X-Task-Type": "ci", "X-Risk-Level": "high"})
    assert r.status_code == status, r.text
    assert wait_for(lambda: _requests_counted(proxy, str(status)) > before, timeout=30)
    assert wait_for(lambda: any(f'"model": "{marker}"' in ln for ln in proxy.log().splitlines()), timeout=30)
    events = [json.loads(ln)["event"] for ln in proxy.log().splitlines()
              if ln.startswith("{") and f'"model": "{marker}"' in ln]
    assert events == ["request"] and fake_upstream.find(marker) == []
