"""Two gateway replicas sharing one real Redis and one policy folder behave as one gateway."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import openai
import pytest
import yaml

from carrot_hooks.serve import ROOT
from tests import services
from tests.conftest import make_client
from tests.fake_upstream import Reply

RPM = 4
PIN = "ds-coder-v2@2025-06-10"


@pytest.fixture(scope="module")
def replicas(start_proxy):
    """Two proxies: same config (PIN limited to RPM), same Redis, same policy dir (a shared ConfigMap)."""
    redis = services.start_private_redis("scaleout")
    tmp = Path(tempfile.mkdtemp(prefix="carrot-scaleout-"))
    shutil.copytree(ROOT / "policy", tmp / "policy")
    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    for m in cfg["model_list"]:
        if m["model_name"] == PIN:
            m["litellm_params"]["rpm"] = RPM
    (tmp / "litellm_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {"REDIS_URL": redis.url, "CARROT_POLICY_DIR": str(tmp / "policy")}
    pair = [start_proxy(env=env, config=tmp / "litellm_config.yaml") for _ in range(2)]
    yield pair, tmp / "policy"
    for p in pair:
        p.stop()
    redis.cleanup()


def ask(p, marker, **kw):
    raw = make_client(p).chat.completions.with_raw_response.create(
        model=kw.pop("model", "gpt-4o"), messages=[{"role": "user", "content": f"scale {marker}"}], **kw)
    return raw.headers, raw.parse().choices[0].message.content


def test_answer_cached_by_one_replica_is_served_by_the_other(replicas, fake_upstream, marker):
    (r1, r2), _ = replicas
    fake_upstream.script(Reply(match=marker, content=f"shared {marker}"))
    h1, t1 = ask(r1, marker)
    h2, t2 = ask(r2, marker)
    assert (h1["x-carrot-cache"], h2["x-carrot-cache"]) == ("miss", "hit")
    assert t1 == t2 == f"shared {marker}"
    assert len(fake_upstream.find(marker)) == 1


def test_rpm_limit_holds_across_replicas(replicas, marker):
    (r1, r2), _ = replicas
    # start at the top of a fresh minute window so all requests share one window
    time.sleep((60 - time.time() % 60) % 60 + 0.5 if time.time() % 60 > 45 else 0)
    statuses = []
    for i in range(RPM + 1):
        try:
            ask((r1, r2)[i % 2], f"{marker}-{i}", model=PIN)
            statuses.append(200)
        except openai.RateLimitError:
            statuses.append(429)
    assert statuses.count(200) == RPM and statuses[-1] == 429, statuses


def test_routing_change_is_picked_up_by_both(replicas, marker):
    (r1, r2), policy = replicas
    path = policy / "routing.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    doc["rules"].insert(0, {"id": "fleet-wide-edit", "when": {"task_type": ["chat"]}, "model": "ds-coder-6.7b"})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        for r in (r1, r2):
            deadline = time.monotonic() + 10
            while ask(r, marker)[0]["x-carrot-route"] != "fleet-wide-edit":
                assert time.monotonic() < deadline, f"replica {r.base_url} kept the old rules"
                time.sleep(0.2)
    finally:
        path.write_text(original)
