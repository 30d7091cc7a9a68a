"""Two gateway replicas sharing one real Redis and one policy folder behave as one gateway."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import yaml

from carrot_hooks.serve import ROOT
from tests import services
from tests.conftest import make_client
from tests.fake_upstream import Reply
from tests.proxy_process import ProxyProcess

RPM = 4
PIN = "ds-coder-v2@2025-06-10"  # rpm RPM: the fleet-wide limit
OUTAGE_PINS = {"down": "ds-coder-6.7b@2025-03-01", "frozen": "ds-coder-v2@2025-09-23"}  # rpm RPM each
# Seconds a run of each outage test takes (what in_one_rpm_window waits to have left of the minute): 2 * (RPM + 1)
# requests took 1.9 s with Redis stopped and 8.7 s with it frozen (mostly fixed REDIS_SOCKET_TIMEOUT waits) on a
# quiet machine; a slower run that crosses a minute is repeated, so the margin only spares waits.
OUTAGE_WINDOW = {"down": 5, "frozen": 15}
RUN_S = 5  # what RPM + 1 requests take, with a margin
LATE_PIN = "ds-coder-6.7b@2025-09-23"  # rpm RPM
PROBE = "ds-coder-v2-vllm"  # rpm high: its counter in Redis shows which replica counts there
PROBE_KEY = "DeepSeek-Coder-V2-Instruct:rpm:"


@dataclass
class Fleet:
    replicas: list[ProxyProcess]
    without_redis: ProxyProcess  # same config and policy dir, no REDIS_URL: not part of the fleet
    policy: Path
    redis: services.RedisServer
    env: dict[str, str]
    config: Path


@pytest.fixture(scope="module")
def fleet(start_proxies):
    """Two proxies: same config (pins rpm-limited), same Redis, same policy dir (a shared ConfigMap); and a
    third one like them but without REDIS_URL (started beside them: an empty REDIS_URL is unset)."""
    redis = services.start_private_redis("scaleout")
    tmp = Path(tempfile.mkdtemp(prefix="carrot-scaleout-"))
    shutil.copytree(ROOT / "policy", tmp / "policy")
    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    limits = {PIN: RPM, LATE_PIN: RPM, PROBE: 10**6, **dict.fromkeys(OUTAGE_PINS.values(), RPM)}
    for m in cfg["model_list"]:
        if m["model_name"] in limits:
            m["litellm_params"]["rpm"] = limits[m["model_name"]]
    (tmp / "litellm_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # LiteLLM's breaker retries a Redis that came back after this many seconds (default 60)
    env = {"REDIS_URL": redis.url, "CARROT_POLICY_DIR": str(tmp / "policy"), "REDIS_SOCKET_TIMEOUT": "0.25",
           "REDIS_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "2"}
    *pair, alone = start_proxies(env, env, {**env, "REDIS_URL": ""}, config=tmp / "litellm_config.yaml")
    yield Fleet(pair, alone, tmp / "policy", redis, env, tmp / "litellm_config.yaml")
    for p in (*pair, alone):
        p.stop()
    redis.cleanup()


def ask(p, marker, **kw):
    raw = make_client(p).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-4o"), messages=[{"role": "user", "content": f"scale {marker}"}], **kw)
    return raw.headers, raw.parse().choices[0].message.content


def status(p, model) -> int:
    try:
        ask(p, uuid.uuid4().hex, model=model)
        return 200
    except openai.RateLimitError:
        return 429


def probe_count(redis: services.RedisServer) -> int:
    """PROBE's rpm counters as stored in Redis by the limiter (`global_router:` keys are the router's usage)."""
    with services.redis.Redis.from_url(redis.url) as r:
        return sum(int(r.get(k) or 0) for k in r.scan_iter(f"*{PROBE_KEY}*") if not k.startswith(b"global_router:"))


def counts_in_redis(p: ProxyProcess, redis: services.RedisServer, timeout: float = 60) -> None:
    """Return once a request to `p` increments its rpm counter in Redis (not only in `p`'s memory)."""
    def counted() -> bool:
        before = probe_count(redis)
        assert status(p, PROBE) == 200
        return probe_count(redis) == before + 1

    assert services.wait_for(counted, timeout), f"{p.base_url} still counts in memory only"


def test_answer_cached_by_one_replica_is_served_by_the_other(fleet, fake_upstream, marker):
    r1, r2 = fleet.replicas
    fake_upstream.script(Reply(match=marker, content=f"shared {marker}"))
    h1, t1 = ask(r1, marker)
    h2, t2 = ask(r2, marker)
    assert (h1["x-carrot-cache"], h2["x-carrot-cache"]) == ("miss", "hit")
    assert t1 == t2 == f"shared {marker}"
    assert len(fake_upstream.find(marker)) == 1


def test_rpm_limit_holds_across_replicas(fleet):
    r1, r2 = fleet.replicas
    statuses = services.in_one_rpm_window(lambda: [status((r1, r2)[i % 2], PIN) for i in range(RPM + 1)], RUN_S)
    assert statuses == [200] * RPM + [429], statuses


def test_routing_change_is_picked_up_by_both(fleet, fake_upstream, marker):
    path = fleet.policy / "routing.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    doc["rules"].insert(0, {"id": "fleet-wide-edit", "when": {"task_type": ["chat"]}, "model": "ds-coder-6.7b"})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    (small,) = [m["litellm_params"]["model"] for m in cfg["model_list"] if m["model_name"] == "ds-coder-6.7b"]
    try:
        for r in fleet.replicas:
            tags: list[str] = []

            def edited(r=r, tags=tags) -> bool:
                tags.append(f"{marker}-{uuid.uuid4().hex[:8]}")  # fresh: a cached answer never reaches the upstream
                return ask(r, tags[-1])[0]["x-carrot-route"] == "fleet-wide-edit"

            assert services.wait_for(edited), f"replica {r.base_url} kept the old rules"
            (sent,) = fake_upstream.find(tags[-1])
            assert (sent.path, sent.json["model"]) == ("/api/chat", small.removeprefix("ollama_chat/"))
    finally:
        path.write_text(original)


@pytest.mark.parametrize("outage", sorted(OUTAGE_PINS))
def test_rate_limited_alias_is_served_per_replica_while_redis_is_out(fleet, outage):
    """Redis stopped or frozen: every replica still serves and counts the limit on its own, so the fleet
    admits up to N per replica; once Redis answers again both count there again."""
    r1, r2 = fleet.replicas
    pin = OUTAGE_PINS[outage]
    cut, restore = (fleet.redis.stop, fleet.redis.start) if outage == "down" else (fleet.redis.pause, fleet.redis.resume)

    def while_out() -> dict[int, list[int]]:
        cut()
        try:
            return {r.port: [status(r, pin) for _ in range(RPM + 1)] for r in (r1, r2)}
        finally:
            restore()

    statuses = services.in_one_rpm_window(while_out, OUTAGE_WINDOW[outage])
    assert list(statuses.values()) == [[200] * RPM + [429]] * 2, statuses
    for r in (r1, r2):
        counts_in_redis(r, fleet.redis)


def test_replica_started_while_redis_down_joins_the_shared_limit(fleet, start_proxy):
    """The router's Redis client comes from router_settings, not from a start-up ping: a replica that
    started while Redis was down counts in Redis as soon as it answers."""
    a = fleet.replicas[0]
    fleet.redis.stop()
    try:
        b = start_proxy(env=fleet.env, config=fleet.config)
    finally:
        fleet.redis.start()
    try:
        # LiteLLM's own coordination Redis (per-key limits in database mode) is still chosen by a start-up
        # ping: this replica keeps those per replica until restarted, as deploy/README.md says
        assert "cross-pod coordination stays in-memory" in b.log()
        for r in (a, b):
            counts_in_redis(r, fleet.redis)
        statuses = services.in_one_rpm_window(lambda: [status((a, b)[i % 2], LATE_PIN) for i in range(RPM + 1)], RUN_S)
        assert statuses == [200] * RPM + [429], statuses
    finally:
        b.stop()


def test_without_redis_url_a_replica_starts_and_counts_in_memory(fleet):
    p = fleet.without_redis
    assert services.in_one_rpm_window(lambda: [status(p, PIN) for _ in range(RPM + 1)], RUN_S) == [200] * RPM + [429]
    assert "result cache: in-memory" in p.log()
