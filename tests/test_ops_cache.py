"""Result cache, metrics and rate limits through the real proxy and a real Redis."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from carrot_hooks import cache
from carrot_hooks.serve import ROOT
from tests import services
from tests.conftest import make_client
from tests.fake_upstream import Reply


def ask(client, marker, *, headers=None, model="gpt-4o", stream=False, **kw):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"explain {marker}"}],
        extra_headers=headers or {}, stream=stream, **kw)
    body = raw.parse()
    text = ("".join(c.choices[0].delta.content or "" for c in body if c.choices) if stream
            else body.choices[0].message.content)
    return raw.headers, text


@pytest.mark.parametrize("stream,extra", [(False, {}), (True, {}), (False, {"extra_body": {"min_p": 0.05}})],
                         ids=["plain", "stream", "provider-param"])
def test_identical_requests_hit(client, fake_upstream, marker, stream, extra):
    fake_upstream.script(Reply(match=marker, content=f"answer for {marker}"))
    h1, t1 = ask(client, marker, stream=stream, **extra)
    h2, t2 = ask(client, marker, stream=stream, **extra)
    assert (h1["x-carrot-cache"], h2["x-carrot-cache"]) == ("miss", "hit")
    assert t1 == t2 == f"answer for {marker}"
    assert len(fake_upstream.find(marker)) == 1


@pytest.mark.parametrize("first,second", [
    ({"headers": {"X-Task-Type": "chat"}}, {"headers": {"X-Task-Type": "refactor"}}),
    ({"headers": {"X-Task-Type": "chat"}}, {"headers": {"X-Model-Alias": "ds-coder-v2@2025-06-10"}}),
    ({"headers": {"X-Model-Alias": "ds-coder-v2@2025-09-23"}}, {"headers": {"X-Model-Alias": "ds-coder-v2@2025-06-10"}}),
    ({"temperature": 0.0}, {"temperature": 0.7}),
    ({"max_tokens": 100}, {"max_tokens": 200}),
    ({"extra_body": {"min_p": 0.0}}, {"extra_body": {"min_p": 0.9}}),  # Ollama-specific sampling parameters
    ({"extra_body": {"num_predict": 5}}, {"extra_body": {"num_predict": 500}}),
    ({"extra_body": {"repeat_penalty": 1.0}}, {"extra_body": {"repeat_penalty": 1.8}}),
], ids=["task-type", "pin-vs-routed", "pin-vs-pin", "temperature", "max-tokens", "min-p", "num-predict",
        "repeat-penalty"])
def test_anything_that_changes_the_answer_misses(client, fake_upstream, marker, first, second):
    ask(client, marker, **first)
    h, _ = ask(client, marker, **second)
    assert h["x-carrot-cache"] == "miss"
    assert len(fake_upstream.find(marker)) == 2


def test_prompt_pack_version_change_misses(proxy, client, fake_upstream, marker):
    path = proxy.policy_dir / "routing.yaml"
    original = path.read_text()
    ask(client, marker)
    doc = yaml.safe_load(original)
    doc["tasks"]["chat"]["pack"] = "explain_tests@v1"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            h, _ = ask(client, marker)
            if h["x-carrot-prompt-pack"] == "explain_tests@v1":
                break
            time.sleep(0.2)
        assert h["x-carrot-prompt-pack"] == "explain_tests@v1" and h["x-carrot-cache"] == "miss"
    finally:
        path.write_text(original)


def test_namespace_separates_tenants_and_upstream_models():
    assert cache.namespace("team-a", ["ollama/m:1", "hosted/m"]) == cache.namespace("team-a", ["hosted/m", "ollama/m:1"])
    assert cache.namespace("team-a", ["ollama/m:1"]) != cache.namespace("team-a", ["ollama/m:2"])
    assert cache.namespace("team-a", ["ollama/m:1"]) != cache.namespace("team-b", ["ollama/m:1"])


def test_in_memory_cache_without_redis(start_proxy, fake_upstream, marker):
    p = start_proxy(env={"REDIS_URL": ""})  # empty is unset (whatever REDIS_URL the run was given)
    try:
        c = make_client(p)
        assert [ask(c, marker)[0]["x-carrot-cache"] for _ in range(2)] == ["miss", "hit"]
        assert len(fake_upstream.find(marker)) == 1
        assert "result cache: in-memory" in p.log()
    finally:
        p.stop()  # not kept to the session's end (about 1 GB)


@pytest.mark.parametrize("bypass", [{"extra_headers": {"Cache-Control": "no-cache"}},
                                    {"extra_body": {"cache": {"no-cache": True}}}], ids=["header", "body"])
def test_client_can_bypass(client, fake_upstream, marker, bypass):
    ask(client, marker)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"explain {marker}"}], **bypass)
    assert raw.headers["x-carrot-cache"] == "miss"
    assert len(fake_upstream.find(marker)) == 2


def test_client_cannot_pick_another_namespace(client, fake_upstream, marker):
    ask(client, marker)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"explain {marker}"}],
        extra_body={"cache": {"namespace": "someone-else"}})
    assert raw.headers["x-carrot-cache"] == "hit"  # our tenant partition, not the client's choice


def test_answers_live_in_redis_with_24h_ttl(client, redis_url, marker):
    r = services.redis.Redis.from_url(redis_url)
    before = set(r.scan_iter("carrot:*", count=1000))
    ask(client, marker)
    written = set(r.scan_iter("carrot:*", count=1000)) - before
    assert written, "the answer wrote no new carrot:* key to Redis"
    ttls = [r.ttl(k) for k in written]
    assert all(86000 < t <= 86400 for t in ttls), ttls


def metrics_text(proxy) -> str:
    r = httpx.get(f"{proxy.base_url}/metrics/", timeout=10, follow_redirects=True)
    assert r.status_code == 200
    return r.text


def test_metrics_after_traffic(proxy, client, marker):
    ask(client, marker, headers={"X-Task-Type": "editor"})
    ask(client, marker, headers={"X-Task-Type": "editor"})
    text = metrics_text(proxy)
    ok = re.search(r'carrot_requests_total\{cache_hit="(true|false)",model="ds-coder-6.7b",route="small-model-tasks",'
                   r'status="200",task_type="editor"\} (\d+)', text)
    assert ok, "carrot_requests_total for editor missing"
    assert 'carrot_requests_total{cache_hit="true",model="ds-coder-6.7b"' in text
    assert re.search(r'carrot_request_duration_seconds_bucket\{le="2.0",model="ds-coder-6.7b",task_type="editor"\}', text)
    assert re.search(r'carrot_tokens_total\{direction="output",model="ds-coder-6.7b"\} [1-9]', text)
    for stage in ("route", "prompt_pack", "context", "cache_key", "guardrail_policy", "guardrail_pii",
                  "guardrail_output"):
        assert f'carrot_hook_duration_seconds_count{{stage="{stage}"}}' in text
    assert "litellm_" in text  # LiteLLM's own series are served beside ours
    assert marker not in text  # no prompt text in labels


def test_rejections_are_counted_by_status(proxy, client, marker):
    with pytest.raises(openai.BadRequestError):
        ask(client, marker, headers={"X-Task-Type": "nope"})
    assert re.search(r'carrot_requests_total\{cache_hit="false",model="none",route="none",status="400",'
                     r'task_type="unknown"\} [1-9]', metrics_text(proxy))


# --- a proxy of its own: a private Redis to stop, an rpm-limited pin, a 120 s cache TTL, its own prompts/ ---

@pytest.fixture(scope="module")
def own_redis():
    server = services.start_private_redis("cache-fault")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def own_prompts():
    path = Path(tempfile.mkdtemp(prefix="carrot-prompts-")) / "prompts"
    shutil.copytree(ROOT / "prompts", path)
    return path


@pytest.fixture(scope="module")
def ops_proxy(start_proxy, own_redis, own_prompts):
    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    for m in cfg["model_list"]:
        if m["model_name"] == "ds-coder-6.7b@2025-03-01":
            m["litellm_params"]["rpm"] = 3
    path = Path(tempfile.mkdtemp(prefix="carrot-ops-")) / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proxy = start_proxy(env={"REDIS_URL": own_redis.url, "CARROT_CACHE_TIMEOUT": "0.2", "CARROT_CACHE_TTL": "120",
                             "CARROT_PROMPTS_DIR": str(own_prompts), "REDIS_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "2"},
                        config=path)
    yield proxy
    proxy.stop()  # before own_redis goes; not kept to the session's end (about 1 GB)


def test_cache_ttl_is_configurable(ops_proxy, own_redis, marker):
    ask(make_client(ops_proxy), marker)
    r = services.redis.Redis.from_url(own_redis.url)
    ttls = [r.ttl(k) for k in r.scan_iter("carrot:*")]
    assert ttls and all(0 < t <= 120 for t in ttls), ttls


def test_a_streamed_answer_is_written_once(ops_proxy, own_redis, marker):
    """LiteLLM finalizes a stream that reports usage twice (litellm_compat.trim_result_cache_overheads):
    one SET of a cache key per answer, streamed or not (Redis's MONITOR, so other SETs do not count). The
    whole answer after it is written later than anything the stream scheduled, so once both keys exist
    every write of the two has landed; a command sent after that ends the MONITOR read."""
    r = services.redis.Redis.from_url(own_redis.url, socket_timeout=30)
    keys, end = set(r.scan_iter("carrot:*")), f"{marker}-end-of-monitor"
    with r.monitor() as monitor:
        c = make_client(ops_proxy)
        assert ask(c, f"{marker} streamed", stream=True)[0]["x-carrot-cache"] == "miss"
        assert ask(c, f"{marker} whole")[0]["x-carrot-cache"] == "miss"
        assert services.wait_for(lambda: len(set(r.scan_iter("carrot:*")) - keys) == 2)
        r.exists(end)
        commands = list(iter(lambda: monitor.next_command()["command"], f"EXISTS {end}"))
    sets = [cmd.split(" ", 2)[1] for cmd in commands if cmd.upper().startswith("SET ")]
    assert len([k for k in sets if k.startswith("carrot:")]) == 2, sets


def test_new_version_of_the_same_pack_misses(ops_proxy, own_prompts, fake_upstream, marker):
    """chat@v1 → chat@v2, a copy with edited text, for the chat task: v2 never gets v1's cached answer."""
    v1 = (own_prompts / "chat@v1.md").read_text()
    (own_prompts / "chat@v2.md").write_text(v1.replace("Be accurate and concise.", "Be accurate, concise and kind."))
    c = make_client(ops_proxy)
    assert ask(c, marker)[0]["x-carrot-prompt-pack"] == "chat@v1"
    assert ask(c, marker)[0]["x-carrot-cache"] == "hit"
    path = ops_proxy.policy_dir / "routing.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    doc["tasks"]["chat"]["pack"] = "chat@v2"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        seen: list[dict] = []
        services.wait_for(lambda: seen.append(ask(c, marker)[0]) or seen[-1]["x-carrot-prompt-pack"] == "chat@v2")
        assert (seen[-1]["x-carrot-prompt-pack"], seen[-1]["x-carrot-cache"]) == ("chat@v2", "miss")
    finally:
        path.write_text(original)
    sent = fake_upstream.find(marker)
    assert len(sent) == 2 and "concise and kind" in sent[1].json["messages"][0]["content"]
    # chat@v1 back in force before the next test (this one's marker no longer asked)
    assert services.wait_for(lambda: ask(c, f"{marker}-restored")[0]["x-carrot-prompt-pack"] == "chat@v1")


def test_rpm_limit_gives_429_with_retry_after(ops_proxy, marker):
    c = make_client(ops_proxy)

    def five() -> tuple[list[int], openai.RateLimitError | None]:
        statuses, refused, tag = [], None, uuid.uuid4().hex[:6]
        for i in range(5):
            try:
                c.chat.completions.create(model="ds-coder-6.7b@2025-03-01",
                                          messages=[{"role": "user", "content": f"{marker} {tag} {i}"}])
                statuses.append(200)
            except openai.RateLimitError as err:
                statuses.append(429)
                refused = err
        return statuses, refused

    statuses, e = services.in_one_rpm_window(five, 10)
    assert statuses == [200, 200, 200, 429, 429] and e is not None, statuses
    retry_after = e.response.headers.get("retry-after")
    assert retry_after is not None and 1 <= int(retry_after) <= 60
    assert "ds-coder-6.7b@2025-03-01" in str(e)


def test_redis_down_or_frozen_still_serves(ops_proxy, own_redis, fake_upstream, marker):
    c = make_client(ops_proxy, timeout=15)
    h, _ = ask(c, marker)
    assert ask(c, marker)[0]["x-carrot-cache"] == "hit"
    # Bounded stall, checked functionally (speed is not asserted): each request on the frozen Redis gets
    # a 3 s client timeout, far above the 0.25 s Redis bound and below the 5 s that LiteLLM's own Redis
    # clients stall for at their default REDIS_SOCKET_TIMEOUT. Eight requests reach those clients too.
    frozen = make_client(ops_proxy, timeout=3)
    own_redis.pause()  # slow: accepts connections, answers nothing
    try:
        for i in range(8):
            assert ask(frozen, f"{marker} frozen {i}")[1]
    finally:
        own_redis.resume()
    own_redis.stop()  # down: connection refused
    for i in range(4):
        h, text = ask(c, f"{marker} down {i}")
        assert text and h["x-carrot-cache"] == "miss"
    # one warning per outage (frozen, then down), not one per failed call (12 requests, 24+ calls)
    assert 1 <= ops_proxy.log().count("Redis cache unavailable") <= 2
    assert re.search(r"carrot_cache_errors_total [1-9]", metrics_text(ops_proxy))
    own_redis.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "caching resumed" not in ops_proxy.log():
        ask(c, f"{marker} back")
        time.sleep(0.5)
    assert "caching resumed" in ops_proxy.log()
    ask(c, f"{marker} again")
    assert ask(c, f"{marker} again")[0]["x-carrot-cache"] == "hit"
    assert list(services.redis.Redis.from_url(own_redis.url).scan_iter("carrot:*"))  # written to Redis again


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_output_guardrails_apply_to_cached_answers(client, fake_upstream, marker, stream):
    token = "ghp_" + "R7kQ2mX9vL4tW8pZ3nB6yH1cF5jD0sA2gE7u"
    fake_upstream.script(Reply(match=marker, content=f"Use this token: {token} in the header."))
    _, t1 = ask(client, marker, stream=stream)
    second, t2 = ask(client, marker, stream=stream)
    assert second["x-carrot-cache"] == "hit"
    assert len(fake_upstream.find(marker)) == 1
    for text in (t1, t2):
        assert token not in text and "[REDACTED" in text
