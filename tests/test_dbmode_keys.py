"""LiteLLM's database mode through the real gateway: virtual keys and teams made with LiteLLM's own
management API drive Carrot's routing, task allowlist, cache tenancy and retrieval, and LiteLLM's
per-key limits, budgets, expiry and spend work beside the static keys of policy/keys.yaml."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
import yaml

from tests.dbmode_support import admin, chat, new_key, new_team
from tests.services import wait_for

pytestmark = pytest.mark.dbmode

CI_UPSTREAM_MODEL = "deepseek-coder:6.7b-instruct-q4_K_M"  # ds-coder-6.7b in litellm_config.yaml


def test_key_metadata_routes_as_ci_and_limits_its_tasks(db_proxy, fake_upstream, marker):
    team = new_team(db_proxy)
    key = new_key(db_proxy, team_id=team, metadata={"task_type": "ci", "carrot_allowed_tasks": ["ci", "chat"]})

    r = chat(db_proxy, key, marker)
    assert r.status_code == 200, r.text
    assert (r.headers["x-carrot-task-type"], r.headers["x-carrot-route"], r.headers["x-carrot-model"]) == (
        "ci", "small-model-tasks", "ds-coder-6.7b")
    [seen] = fake_upstream.find(marker)
    assert seen.json["model"] == CI_UPSTREAM_MODEL

    refused = chat(db_proxy, key, f"{marker}-refactor", headers={"X-Task-Type": "refactor"})
    assert refused.status_code == 403, refused.text
    assert "refactor" in refused.json()["error"]["message"]
    assert fake_upstream.find(f"{marker}-refactor") == []
    allowed = chat(db_proxy, key, f"{marker}-chat", headers={"X-Task-Type": "chat"})
    assert allowed.status_code == 200 and allowed.headers["x-carrot-task-type"] == "chat"


def test_team_metadata_allowlist_applies_to_its_keys(db_proxy, fake_upstream, marker):
    team = new_team(db_proxy, metadata={"carrot_allowed_tasks": ["editor"]})
    key = new_key(db_proxy, team_id=team)
    refused = chat(db_proxy, key, marker, headers={"X-Task-Type": "chat"})
    assert refused.status_code == 403 and "team metadata" in refused.json()["error"]["message"], refused.text
    # key metadata wins over the team's
    own = new_key(db_proxy, team_id=team, metadata={"carrot_allowed_tasks": ["chat"]})
    assert chat(db_proxy, own, marker, headers={"X-Task-Type": "chat"}).status_code == 200
    assert len(fake_upstream.find(marker)) == 1


def test_cache_is_scoped_to_the_keys_team(db_proxy, fake_upstream, marker):
    team_a, team_b = new_team(db_proxy), new_team(db_proxy)
    a1, a2 = new_key(db_proxy, team_id=team_a), new_key(db_proxy, team_id=team_a)
    b = new_key(db_proxy, team_id=team_b)
    assert chat(db_proxy, a1, marker).headers["x-carrot-cache"] == "miss"
    assert chat(db_proxy, a2, marker).headers["x-carrot-cache"] == "hit"  # one team, one cache
    r = chat(db_proxy, b, marker)
    assert r.status_code == 200 and r.headers["x-carrot-cache"] == "miss"
    assert len(fake_upstream.find(marker)) == 2  # the second team's request reached the upstream


def test_key_rpm_limit_gives_429_with_retry_after(db_proxy, fake_upstream, marker):
    key = new_key(db_proxy, rpm_limit=2)  # a key's window starts at its first request (LiteLLM's limiter v3): no wait
    assert [chat(db_proxy, key, f"{marker}-{i}").status_code for i in range(2)] == [200, 200]
    limited = chat(db_proxy, key, f"{marker}-2")
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) > 0
    assert fake_upstream.find(f"{marker}-2") == []


def test_budget_is_enforced_and_spend_recorded_per_key_and_team(db_proxy, marker):
    """Priced traffic (high risk routes to alt-reasoning, an OpenAI model with a list price)."""
    team = new_team(db_proxy)
    key = new_key(db_proxy, team_id=team, max_budget=0.000001)
    high = {"X-Risk-Level": "high"}
    first = chat(db_proxy, key, marker, headers=high)
    assert first.status_code == 200 and first.headers["x-carrot-model"] == "alt-reasoning", first.text
    answers: list[httpx.Response] = []
    assert wait_for(lambda: answers.append(chat(db_proxy, key, f"{marker}-{len(answers)}", headers=high))
                    or answers[-1].status_code != 200, timeout=60, every=1), answers[-1].text
    refused = answers[-1].json()["error"]
    assert answers[-1].status_code == 422 and refused["type"] == "budget_exceeded", refused

    def spend(path: str, params: dict, field: str) -> float:
        return admin(db_proxy, "GET", path, params=params)[field]["spend"] or 0.0

    assert wait_for(lambda: spend("/key/info", {"key": key}, "info") > 0, timeout=120, every=2)
    assert wait_for(lambda: spend("/team/info", {"team_id": team}, "team_info") > 0, timeout=120, every=2)


def test_deleted_and_expired_keys_get_401(db_proxy, fake_upstream, marker):
    expiring = new_key(db_proxy, duration="20s")
    deleted = new_key(db_proxy)
    assert chat(db_proxy, expiring, f"{marker}-e").status_code == 200
    assert chat(db_proxy, deleted, f"{marker}-d").status_code == 200
    admin(db_proxy, "POST", "/key/delete", json={"keys": [deleted]})
    gone = chat(db_proxy, deleted, f"{marker}-d2")
    assert gone.status_code == 401, gone.text
    assert fake_upstream.find(f"{marker}-d2") == []
    tries = iter(range(1000))
    assert wait_for(lambda: chat(db_proxy, expiring, f"{marker}-e{next(tries)}x").status_code == 401, timeout=90,
                    every=2)
    late = chat(db_proxy, expiring, f"{marker}-late")
    assert late.status_code == 401, late.text
    assert fake_upstream.find(f"{marker}-late") == []


def test_static_keys_and_master_key_work_beside_db_keys(db_proxy, marker):
    static = f"sk-static-{uuid.uuid4().hex}"
    path = db_proxy.policy_dir / "keys.yaml"
    original = path.read_text()
    path.write_text(yaml.safe_dump({"keys": [{"sha256": hashlib.sha256(static.encode()).hexdigest(),
                                              "tenant": "team-static", "metadata": {"task_type": "ci"}}]}))
    try:
        assert wait_for(lambda: chat(db_proxy, static, marker).status_code == 200, timeout=30)
        assert chat(db_proxy, static, marker).headers["x-carrot-task-type"] == "ci"
        assert chat(db_proxy, db_proxy.master_key, marker).status_code == 200
        assert chat(db_proxy, new_key(db_proxy), marker).status_code == 200
        assert chat(db_proxy, f"sk-unknown-{uuid.uuid4().hex}", marker).status_code == 401
    finally:
        path.write_text(original)


def test_rag_code_request_searches_the_keys_repos(db_proxy, marker):
    """Contract with carrot_hooks/rag.py: a header-less rag-code request takes its repositories from the
    key's metadata `carrot_repos` (then its team's), so it is never answered `no-repo`."""
    key = new_key(db_proxy, metadata={"carrot_repos": [f"dbmode-repo-{marker}"]})
    r = chat(db_proxy, key, marker, headers={"X-Task-Type": "rag-code"})
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-task-type"] == "rag-code"
    assert r.headers.get("x-carrot-rag") in ("not-indexed", "unavailable")  # the key's repo looked up (not indexed)
    bare = chat(db_proxy, new_key(db_proxy), f"{marker}-bare", headers={"X-Task-Type": "rag-code"})
    assert bare.headers.get("x-carrot-rag") == "no-repo"  # the same request without carrot_repos


def test_two_replicas_share_keys_and_limits(db_proxy, start_proxy, redis_url, dbmode_database, fake_upstream,
                                           marker):
    second = start_proxy(env={"REDIS_URL": redis_url, **dbmode_database})
    try:
        key = new_key(db_proxy, rpm_limit=3)  # made on the first replica
        codes = [chat(p, key, f"{marker}-{i}").status_code for i, p in enumerate((second, db_proxy, second))]
        assert codes == [200, 200, 200]
        limited = chat(db_proxy, key, f"{marker}-3")
        assert limited.status_code == 429, limited.text
        assert len(fake_upstream.find(marker)) == 3
        admin(second, "POST", "/key/delete", json={"keys": [key]})  # deleted on the replica that never made it
        assert chat(second, key, f"{marker}-4").status_code == 401
    finally:
        second.stop()
