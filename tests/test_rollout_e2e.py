"""Canary rollout through two real proxies sharing one Redis: sticky arms per API key, explicit pins bypass
the canary, a failing candidate is rolled back on both replicas (one decision, one log line, metrics), a slow
candidate is rolled back on its p95; and the admin-only prompt-pack override carrot-eval uses."""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from carrot_hooks.rollout import Canary
from tests.fake_upstream import Reply
from tests.services import wait_for

ROOT = Path(__file__).resolve().parent.parent
ALIAS, STABLE, CANDIDATE = "ds-coder-v2", "ds-coder-v2@2025-09-23", "ds-coder-v2@2025-11-30"
CANDIDATE_UPSTREAM = "deepseek-coder-v2:16b-lite-instruct-q8_0"  # litellm_config.yaml, the candidate pin's model
TENANTS = [f"team-{i}" for i in range(12)]
ADMIN_TENANT = "eval-admin"


def key_of(tenant: str) -> str:
    return f"sk-{tenant}-" + hashlib.sha256(tenant.encode()).hexdigest()[:16]


def canary_yaml(share: str, **rollback) -> dict:
    # `started` unique per run: a generation rolled back in an earlier test session stays rolled back in Redis
    return {ALIAS: {"stable": STABLE, "candidate": CANDIDATE, "share": share, "started": uuid.uuid4().hex,
                    "rollback": {"window_seconds": 120, "min_requests": 6, **rollback}}}


def set_canaries(proxy, canaries: dict) -> None:
    path = proxy.policy_dir / "routing.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["canaries"] = canaries
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@pytest.fixture(scope="module")
def replicas(start_proxies, redis_url, tmp_path_factory):
    """Two proxies on one Redis, with tenant keys (one of them admin) and a pack chat@v2 next to the shipped ones."""
    prompts = tmp_path_factory.mktemp("prompts")
    shutil.copytree(ROOT / "prompts", prompts, dirs_exist_ok=True)
    (prompts / "chat@v2.md").write_text("You are the chat pack version two. PACK-V2-MARKER\n")
    env = {"REDIS_URL": redis_url, "CARROT_PROMPTS_DIR": str(prompts)}
    procs = start_proxies(env, env)
    keys = [{"sha256": hashlib.sha256(key_of(t).encode()).hexdigest(), "tenant": t} for t in TENANTS]
    keys.append({"sha256": hashlib.sha256(key_of(ADMIN_TENANT).encode()).hexdigest(), "tenant": ADMIN_TENANT,
                 "metadata": {"carrot_admin": True}})
    for p in procs:
        (p.policy_dir / "keys.yaml").write_text(yaml.safe_dump({"keys": keys}))
    yield procs
    for p in procs:
        p.stop()  # not kept to the session's end (about 1 GB each)


def ask(proxy, tenant: str, text: str, **headers) -> httpx.Response:
    return httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=60,
                      headers={"Authorization": f"Bearer {key_of(tenant)}", "X-Task-Type": "chat", **headers},
                      json={"model": "auto", "messages": [{"role": "user", "content": text}]})


def metric(proxy, name: str, **labels) -> float:
    text = httpx.get(f"{proxy.base_url}/metrics/", timeout=10, follow_redirects=True).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m[1].split(","))) == want:
            total += float(m[2])
    return total


def test_canary_is_sticky_per_key_pins_bypass_it_and_a_failing_candidate_rolls_back_on_both(
        replicas, fake_upstream, marker):
    rule = canary_yaml("50%", max_error_rate_delta=0.2)
    for p in replicas:
        set_canaries(p, rule)
    canary = Canary.model_validate(rule[ALIAS])
    expected = {t: canary.arm_for(ALIAS, t) for t in TENANTS}
    assert {"stable", "candidate"} <= set(expected.values())
    # both replicas have re-read the edited policy once a request says which arm served it
    for p in replicas:
        assert wait_for(lambda p=p: "x-carrot-arm" in ask(p, TENANTS[0], f"{marker} warm").headers, timeout=20)

    # healthy: every key lands in the same arm on both replicas, served by that arm's pin
    for t in TENANTS:
        for p in replicas:
            r = ask(p, t, f"{marker} hello from {t}")
            assert r.status_code == 200, r.text
            arm = r.headers["x-carrot-arm"]
            assert arm == expected[t] and r.headers["x-carrot-model"] == (CANDIDATE if arm == "candidate" else STABLE)
    pinned = ask(replicas[0], TENANTS[0], f"{marker} pinned", **{"X-Model-Alias": "ds-coder-v2@2025-06-10"})
    assert pinned.headers["x-carrot-model"] == "ds-coder-v2@2025-06-10" and "x-carrot-arm" not in pinned.headers

    # the candidate's upstream starts failing: candidate keys alternate between the replicas until both
    # route them to stable again
    failing = Reply(model=CANDIDATE_UPSTREAM, status=500, times=0)
    fake_upstream.script(failing)
    candidates = [t for t in TENANTS if expected[t] == "candidate"]
    sent = []
    try:
        def back_to_stable() -> bool:
            i = len(sent)
            r = ask(replicas[i % 2], candidates[i % len(candidates)], f"{marker} during failure {i}")
            sent.append(r.status_code)
            return r.headers.get("x-carrot-arm") == "stable"

        assert wait_for(back_to_stable, timeout=120, every=0.1), f"never rolled back after {len(sent)} requests"
        assert 500 <= max(sent) < 600  # the candidate did fail before the rollback
        for p in replicas:  # the other replica follows within its state cache (1 s)
            assert wait_for(lambda p=p: all(ask(p, t, f"{marker} after").headers.get("x-carrot-arm") == "stable"
                                            for t in candidates), timeout=20)
    finally:
        fake_upstream.withdraw(failing)
    for t in candidates:
        for p in replicas:
            r = ask(p, t, f"{marker} recovered {t}")
            assert r.status_code == 200 and r.headers["x-carrot-model"] == STABLE
    # one decision: one log line and one rollback counted across the fleet; both report the new state
    lines = [line for p in replicas for line in p.log().splitlines() if "canary rollback" in line]
    assert len(lines) == 1 and "error_rate" in lines[0] and CANDIDATE in lines[0], lines
    assert sum(metric(p, "carrot_rollout_rollbacks_total", alias=ALIAS, reason="error_rate") for p in replicas) == 1
    for p in replicas:
        assert metric(p, "carrot_rollout_state", alias=ALIAS, arm="candidate") == 0
        assert metric(p, "carrot_rollout_state", alias=ALIAS, arm="stable") == 1


def test_a_slow_candidate_is_rolled_back_on_its_p95(replicas, fake_upstream, marker):
    proxy = replicas[0]
    # a new canary generation (other share): a fresh window, re-armed after the previous test's rollback
    set_canaries(proxy, canary_yaml("100%", min_requests=3, slo_p95_seconds=0.5))
    slow = Reply(model=CANDIDATE_UPSTREAM, delay=1.0, content="slow but right", times=0)
    fake_upstream.script(slow)
    try:
        assert wait_for(lambda: ask(proxy, TENANTS[0], f"{marker} warm").headers.get("x-carrot-arm") == "candidate",
                        timeout=20)
        arms = []
        assert wait_for(lambda: arms.append(ask(proxy, TENANTS[0], f"{marker} {uuid.uuid4()}").headers["x-carrot-arm"])
                        or arms[-1] == "stable", timeout=120, every=0.1)
    finally:
        fake_upstream.withdraw(slow)
    assert "candidate" in arms  # it did serve slowly first
    assert any("canary rollback" in line and "latency" in line for line in proxy.log().splitlines())


def test_prompt_pack_override_needs_an_admin_key(replicas, fake_upstream, marker):
    proxy = replicas[1]
    header = {"X-Carrot-Prompt-Pack": "chat@v2"}
    refused = ask(proxy, TENANTS[0], f"{marker} user", **header)
    assert refused.status_code == 403 and "X-Carrot-Prompt-Pack" in refused.text
    assert not fake_upstream.find(f"{marker} user")
    for key in (key_of(ADMIN_TENANT), proxy.master_key):
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=60,
                       headers={"Authorization": f"Bearer {key}", "X-Task-Type": "chat", **header},
                       json={"model": "auto", "messages": [{"role": "user", "content": f"{marker} {key[:6]}"}]})
        assert r.status_code == 200 and r.headers["x-carrot-prompt-pack"] == "chat@v2", r.text
        (sent,) = fake_upstream.find(f"{marker} {key[:6]}")
        assert "PACK-V2-MARKER" in sent.system_messages[0]
    missing = ask(proxy, ADMIN_TENANT, f"{marker} missing", **{"X-Carrot-Prompt-Pack": "chat@v9"})
    assert missing.status_code == 400 and "X-Carrot-Prompt-Pack" in missing.text
