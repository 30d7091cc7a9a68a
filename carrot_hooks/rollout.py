"""Canary rollouts (`canaries` in policy/routing.yaml): a sticky arm per API key, a sliding window of outcomes
per arm, and automatic rollback of the candidate; with REDIS_URL every replica shares window and decision.

Not LiteLLM's weighted deployments (`weight` on several deployments of one model_name): those pick a deployment
per request at random (no stickiness per key, one developer would see both versions), report per deployment
rather than per arm, and cannot be switched off by the gateway without a config reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .config import Strict
from .context import RequestContext
from .metrics import ROLLBACKS, ROLLOUT_STATE

log = logging.getLogger("carrot.rollout")
Arm = Literal["stable", "candidate"]
REASONS = ("error_rate", "latency", "guardrail_blocks")
BUCKET_SECONDS = 5  # Redis window granularity
STATE_TTL = 1.0  # how long a replica trusts its copy of the shared decision


class Rollback(Strict):
    """When the candidate counts as worse than stable, over the last `window_seconds`."""

    window_seconds: int = Field(default=300, ge=5)
    min_requests: int = Field(default=20, ge=1)  # per arm, before the candidate is judged
    max_error_rate_delta: float = Field(default=0.05, ge=0, le=1)  # candidate 5xx rate minus stable's
    max_block_rate_delta: float = Field(default=0.05, ge=0, le=1)  # candidate guardrail-block rate minus stable's
    slo_p95_seconds: float | None = Field(default=None, gt=0)  # candidate p95 above it (and above stable's)


class Canary(Strict):
    """`alias: {stable: pin, candidate: pin, share: 10%}`: requests routed to `alias` go to one of two pins."""

    stable: str
    candidate: str
    share: float = Field(ge=0, le=1)
    started: str | None = None  # a label of this run (e.g. a date); changing it re-arms a rolled-back canary
    rollback: Rollback = Rollback()

    @field_validator("share", mode="before")
    @classmethod
    def _percent(cls, v):
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                return float(v.strip()[:-1]) / 100
            except ValueError:
                raise ValueError(f"share must be a fraction (0.1) or a percentage (10%), got {v!r}") from None
        return v

    @model_validator(mode="after")
    def _two_arms(self) -> Canary:
        if self.stable == self.candidate:
            raise ValueError("stable and candidate must be different aliases")
        return self

    def generation(self, alias: str) -> str:
        """Identity of this canary: editing stable, candidate, share or started starts a new one (fresh window,
        re-armed); the rollback decision of a generation outlives restarts (in Redis)."""
        raw = json.dumps([alias, self.stable, self.candidate, self.share, self.started])
        return f"{alias}:{hashlib.sha256(raw.encode()).hexdigest()[:12]}"

    def arm_for(self, alias: str, tenant: str) -> Arm:
        """Sticky: the same key/tenant always lands in the same arm for a given share."""
        digest = hashlib.sha256(f"{alias}\x00{tenant}".encode()).digest()
        return "candidate" if int.from_bytes(digest[:8], "big") / 2**64 < self.share else "stable"


@dataclass
class Stats:
    """One arm's outcomes in the window."""

    n: int = 0
    errors: int = 0
    blocks: int = 0
    latencies: list[float] = field(default_factory=list)

    def rate(self, count: int) -> float:
        return count / self.n if self.n else 0.0

    @property
    def p95(self) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def verdict(rule: Rollback, stable: Stats, candidate: Stats) -> str | None:
    """The reason the candidate is worse than stable, or None. Stable with too few requests counts as perfect."""
    if candidate.n < rule.min_requests:
        return None
    base = stable if stable.n >= rule.min_requests else Stats()
    if candidate.rate(candidate.errors) - base.rate(base.errors) > rule.max_error_rate_delta:
        return (f"error_rate: candidate {candidate.rate(candidate.errors):.0%} of {candidate.n} requests failed, "
                f"stable {base.rate(base.errors):.0%} (allowed +{rule.max_error_rate_delta:.0%})")
    if candidate.rate(candidate.blocks) - base.rate(base.blocks) > rule.max_block_rate_delta:
        return (f"guardrail_blocks: candidate {candidate.rate(candidate.blocks):.0%} blocked, stable "
                f"{base.rate(base.blocks):.0%} (allowed +{rule.max_block_rate_delta:.0%})")
    slo = rule.slo_p95_seconds
    if slo is not None and candidate.p95 > slo and candidate.p95 > base.p95:
        return f"latency: candidate p95 {candidate.p95:.2f}s over the SLO {slo:g}s (stable {base.p95:.2f}s)"
    return None


class _LocalStore:
    """One replica's window and decisions (REDIS_URL unset, or Redis unreachable)."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], deque] = {}
        self.states: dict[str, str] = {}

    async def record(self, gen: str, arm: str, error: bool, blocked: bool, latency: float | None, window: int) -> None:
        q = self.events.setdefault((gen, arm), deque())
        q.append((time.time(), error, blocked, latency))
        while q and q[0][0] < time.time() - window:
            q.popleft()

    async def stats(self, gen: str, arm: str, window: int) -> Stats:
        s = Stats()
        for t, error, blocked, latency in self.events.get((gen, arm), ()):
            if t >= time.time() - window:
                s.n, s.errors, s.blocks = s.n + 1, s.errors + error, s.blocks + blocked
                if latency is not None:
                    s.latencies.append(latency)
        return s

    async def decide(self, gen: str, reason: str, window: int) -> bool:
        if gen in self.states:
            return False
        self.states[gen] = reason
        return True

    async def state(self, gen: str) -> str | None:
        return self.states.get(gen)


class _RedisStore:
    """The window as 5-second buckets of counters (hash) and latencies (list), and the decision as one key
    written with SET NX: every replica adds to and reads the same window; exactly one logs the rollback."""

    def __init__(self, url: str, timeout: float) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    @staticmethod
    def _key(gen: str, arm: str, bucket: int) -> str:
        return f"carrot:rollout:{gen}:{arm}:{bucket}"

    async def record(self, gen: str, arm: str, error: bool, blocked: bool, latency: float | None, window: int) -> None:
        key = self._key(gen, arm, int(time.time() // BUCKET_SECONDS))
        ttl = window + 2 * BUCKET_SECONDS
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(key, "n", 1).hincrby(key, "errors", int(error)).hincrby(key, "blocks", int(blocked))
        pipe.expire(key, ttl)
        if latency is not None:
            pipe.rpush(f"{key}:lat", round(latency, 4)).expire(f"{key}:lat", ttl)
        await pipe.execute()

    async def stats(self, gen: str, arm: str, window: int) -> Stats:
        now = int(time.time() // BUCKET_SECONDS)
        buckets = range(now - window // BUCKET_SECONDS, now + 1)
        pipe = self.client.pipeline(transaction=False)
        for b in buckets:
            pipe.hgetall(self._key(gen, arm, b)).lrange(f"{self._key(gen, arm, b)}:lat", 0, -1)
        replies = await pipe.execute()
        s = Stats()
        for counters, lats in zip(replies[::2], replies[1::2], strict=True):
            s.n += int(counters.get(b"n", 0))
            s.errors += int(counters.get(b"errors", 0))
            s.blocks += int(counters.get(b"blocks", 0))
            s.latencies += [float(x) for x in lats]
        return s

    async def decide(self, gen: str, reason: str, window: int) -> bool:
        return bool(await self.client.set(f"carrot:rollout:{gen}:state", reason, nx=True))

    async def state(self, gen: str) -> str | None:
        value = await self.client.get(f"carrot:rollout:{gen}:state")
        return value.decode() if value is not None else None


class Rollouts:
    """Arm choice, outcome recording and the rollback decision for every canary of the routing policy."""

    def __init__(self, redis_url: str | None = None, timeout: float = 0.25) -> None:
        self.local = _LocalStore()
        self.shared = _RedisStore(redis_url, timeout) if redis_url else None
        self._states: dict[str, tuple[float, str | None]] = {}  # gen -> (read at, rollback reason)
        self._judged: dict[str, float] = {}
        self._outage = False

    async def _call(self, op: str, *args):
        """The op on Redis; on failure the replica's own window/decision (one warning per outage)."""
        if self.shared is not None:
            try:
                result = await asyncio.wait_for(getattr(self.shared, op)(*args), 1.0)
            except Exception as e:  # noqa: BLE001 - Redis down or slow: decide locally until it answers
                if not self._outage:
                    self._outage = True
                    log.warning("rollout state in Redis unavailable (%s: %s); using this replica's window",
                                op, type(e).__name__)
            else:
                self._outage = False
                return result
        return await getattr(self.local, op)(*args)

    async def rolled_back(self, gen: str) -> str | None:
        """The rollback reason of a canary generation (cached for STATE_TTL), None while it runs."""
        at, reason = self._states.get(gen, (0.0, None))
        if reason is None and time.monotonic() - at > STATE_TTL:
            reason = await self._call("state", gen)
            self._states[gen] = (time.monotonic(), reason)
        return reason

    async def apply(self, canaries: dict[str, Canary], ctx: RequestContext) -> None:
        """Route a request whose alias has a canary to its arm (ctx.model_alias, ctx.arm); pins never match."""
        canary = canaries.get(ctx.model_alias)
        if canary is None:
            return
        alias, gen = ctx.model_alias, canary.generation(ctx.model_alias)
        reason = await self.rolled_back(gen) if canary.share > 0 else None
        share = 0.0 if reason else canary.share
        ROLLOUT_STATE.labels(alias, "candidate").set(share)
        ROLLOUT_STATE.labels(alias, "stable").set(1 - share)
        for r in REASONS:
            ROLLBACKS.labels(alias, r)  # every series exists (at 0) while a canary is configured
        arm: Arm = "stable" if reason else canary.arm_for(alias, ctx.tenant)
        ctx.canary, ctx.arm, ctx.model_alias = alias, arm, getattr(canary, arm)

    async def observe(self, canaries: dict[str, Canary], ctx: RequestContext, *, error: bool,
                      latency: float | None) -> None:
        """Add one finished request to its arm's window; judge the candidate at most once a second per replica."""
        canary = canaries.get(ctx.canary or "")
        if canary is None or ctx.arm is None:
            return
        gen, rule = canary.generation(ctx.canary), canary.rollback
        blocked = any(v.action == "block" for v in ctx.verdicts)
        await self._call("record", gen, ctx.arm, error, blocked, latency, rule.window_seconds)
        if time.monotonic() - self._judged.get(gen, 0.0) < 1.0 or await self.rolled_back(gen):
            return
        self._judged[gen] = time.monotonic()
        stable = await self._call("stats", gen, "stable", rule.window_seconds)
        candidate = await self._call("stats", gen, "candidate", rule.window_seconds)
        reason = verdict(rule, stable, candidate)
        if reason is None:
            return
        self._states[gen] = (time.monotonic(), reason)
        if await self._call("decide", gen, reason, rule.window_seconds):  # this replica made the decision
            ROLLBACKS.labels(ctx.canary, reason.split(":", 1)[0]).inc()
            log.error("canary rollback: %s candidate %s share %.0f%% -> 0 (stable %s): %s", ctx.canary,
                      canary.candidate, canary.share * 100, canary.stable, reason)
        ROLLOUT_STATE.labels(ctx.canary, "candidate").set(0)
        ROLLOUT_STATE.labels(ctx.canary, "stable").set(1)


rollouts = Rollouts(os.environ.get("REDIS_URL") or None)
