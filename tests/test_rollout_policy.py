"""Canary policy and decision logic without a proxy: share parsing, stickiness, the rollback verdict,
and the shared window/decision in a real Redis (two Rollouts instances stand for two replicas)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import pytest
from pydantic import ValidationError

from carrot_hooks.context import RequestContext, Verdict
from carrot_hooks.rollout import Canary, Rollback, Rollouts, Stats, verdict


def canary(**kw) -> Canary:
    return Canary.model_validate({"stable": "m@1", "candidate": "m@2", "share": "10%", **kw})


@pytest.mark.parametrize(("share", "value"), [("10%", 0.1), ("0%", 0.0), (0.25, 0.25), ("100%", 1.0)])
def test_share_is_a_fraction_or_a_percentage(share, value):
    assert canary(share=share).share == value


@pytest.mark.parametrize("share", ["ten%", "150%", -0.1, "x"])
def test_bad_share_is_refused_naming_the_field(share):
    with pytest.raises(ValidationError, match="share"):
        canary(share=share)


def test_same_alias_for_both_arms_is_refused():
    with pytest.raises(ValidationError, match="different"):
        canary(candidate="m@1")


def test_arm_is_sticky_per_tenant_and_the_candidate_gets_its_share():
    c = canary(share="10%")
    tenants = [f"team-{i}" for i in range(4000)]
    arms = [c.arm_for("m", t) for t in tenants]
    assert arms == [c.arm_for("m", t) for t in tenants]  # the same answer every time
    k = arms.count("candidate")
    assert abs(k - 400) < 4 * math.sqrt(4000 * 0.1 * 0.9), k  # within 4 standard deviations of 10 %
    # raising the share only moves stable tenants to the candidate, never back
    wider = canary(share="30%")
    assert all(wider.arm_for("m", t) == "candidate" for t, a in zip(tenants, arms, strict=True) if a == "candidate")


def test_generation_changes_with_any_edit_of_the_canary():
    gens = {canary().generation("m"), canary(share="20%").generation("m"), canary(candidate="m@3").generation("m"),
            canary().generation("other"), canary(started="2025-12-02").generation("m")}
    assert len(gens) == 5 and canary().generation("m") == canary().generation("m")


def stats(n: int, errors: int = 0, blocks: int = 0, latency: float = 0.1) -> Stats:
    return Stats(n, errors, blocks, [latency] * n)


@pytest.mark.parametrize(("stable", "candidate", "reason"), [
    (stats(100), stats(19, errors=19), None),  # below min_requests: not judged yet
    (stats(100, errors=2), stats(20, errors=1), None),  # 5 % vs 2 %: within +5 points
    (stats(100, errors=2), stats(20, errors=2), "error_rate"),  # 10 % vs 2 %
    (stats(3), stats(20, errors=2), "error_rate"),  # stable too quiet to compare: judged against zero
    (stats(100, blocks=10), stats(20, blocks=3), None),  # 15 % vs 10 %
    (stats(100, blocks=10), stats(20, blocks=4), "guardrail_blocks"),
    (stats(100, latency=1.0), stats(20, latency=5.0), "latency"),  # p95 5 s over the 4 s SLO
    (stats(100, latency=6.0), stats(20, latency=5.0), None),  # over the SLO, but stable is slower still
])
def test_verdict(stable, candidate, reason):
    rule = Rollback(min_requests=20, slo_p95_seconds=4)
    got = verdict(rule, stable, candidate)
    assert (got.split(":")[0] if got else None) == reason


def ctx_for(tenant: str) -> RequestContext:
    return RequestContext(task_type="chat", risk="low", tenant=tenant, model_alias="ds-coder-v2")


def test_two_replicas_share_the_window_and_one_decision_through_redis(redis_url):
    alias = f"ds-coder-v2-{uuid.uuid4().hex[:6]}"
    canaries = {alias: canary(share="100%", rollback={"min_requests": 6, "window_seconds": 60})}
    a, b = Rollouts(redis_url), Rollouts(redis_url)

    async def run():
        for i in range(6):  # three failures seen by each replica: only the shared window reaches six
            replica = (a, b)[i % 2]
            ctx = RequestContext(task_type="chat", risk="low", tenant="t", model_alias=alias)
            await replica.apply(canaries, ctx)
            assert ctx.arm == "candidate" and ctx.model_alias == "m@2"
            replica._judged.clear()  # judge after every request instead of once a second
            await replica.observe(canaries, ctx, error=True, latency=None)
        gen = canaries[alias].generation(alias)
        for replica in (a, b):  # each re-reads the shared decision once its copy is older than STATE_TTL
            deadline = time.monotonic() + 10
            while not await replica.rolled_back(gen) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert (await replica.rolled_back(gen)).startswith("error_rate")
        ctx = RequestContext(task_type="chat", risk="low", tenant="t", model_alias=alias)
        await b.apply(canaries, ctx)
        assert (ctx.arm, ctx.model_alias) == ("stable", "m@1")

    asyncio.run(run())
    assert len([1 for r in (a, b) if r.local.states]) == 0  # nothing fell back to a replica-local decision


def test_blocks_count_against_the_candidate_without_redis():
    alias = "ds-coder-v2"
    canaries = {alias: canary(share="100%", rollback={"min_requests": 4, "max_block_rate_delta": 0.2})}
    r = Rollouts(None)

    async def run():
        for _ in range(4):
            ctx = ctx_for("t")
            await r.apply(canaries, ctx)
            ctx.verdicts.append(Verdict("policy", "block", "test"))
            r._judged.clear()
            await r.observe(canaries, ctx, error=False, latency=0.1)
        return await r.rolled_back(canaries[alias].generation(alias))

    assert asyncio.run(run()).startswith("guardrail_blocks")
