"""Tenants through the real proxy: static tenant keys (policy/keys.yaml) scope the cache and carry defaults."""

from __future__ import annotations

import hashlib
import time

import openai
import pytest
import yaml

from tests.conftest import make_client

KEYS = {"team-a": "sk-tenant-a-" + "a1" * 20, "team-b": "sk-tenant-b-" + "b2" * 20,
        "team-ci": "sk-tenant-ci-" + "c3" * 20}


@pytest.fixture(scope="module")
def tenant_clients(proxy):
    path = proxy.policy_dir / "keys.yaml"
    original = path.read_text()
    entries = [{"sha256": hashlib.sha256(k.encode()).hexdigest(), "tenant": t,
                "metadata": {"task_type": "ci"} if t == "team-ci" else {}} for t, k in KEYS.items()]
    path.write_text(yaml.safe_dump({"keys": entries}))
    clients = {t: openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=k, max_retries=0, timeout=60)
               for t, k in KEYS.items()}
    deadline = time.monotonic() + 10
    while True:  # the keys file is re-read within a second
        try:
            clients["team-a"].models.list()
            break
        except openai.AuthenticationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    yield clients
    path.write_text(original)


def ask(c, marker, **kw):
    raw = c.chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-4o"), messages=[{"role": "user", "content": f"same question {marker}"}], **kw)
    return raw.headers, raw.parse().choices[0].message.content


def test_cache_is_never_shared_across_tenants(tenant_clients, proxy, fake_upstream, marker):
    a, b = tenant_clients["team-a"], tenant_clients["team-b"]
    assert ask(a, marker)[0]["x-carrot-cache"] == "miss"
    assert ask(a, marker)[0]["x-carrot-cache"] == "hit"
    assert ask(b, marker)[0]["x-carrot-cache"] == "miss"
    assert ask(make_client(proxy), marker)[0]["x-carrot-cache"] == "miss"  # the master key is a tenant too
    assert len(fake_upstream.find(marker)) == 3


def test_key_metadata_sets_default_task_type(tenant_clients, fake_upstream, marker):
    ci = tenant_clients["team-ci"]
    h, _ = ask(ci, marker, model="auto")
    assert (h["x-carrot-task-type"], h["x-carrot-model"], h["x-carrot-prompt-pack"]) == ("ci", "ds-coder-6.7b",
                                                                                        "ci_review@v1")
    h, _ = ask(ci, marker, model="auto", extra_headers={"X-Task-Type": "chat"})
    assert h["x-carrot-task-type"] == "chat"  # a header wins over key metadata
