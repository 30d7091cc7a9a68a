"""Result cache: LiteLLM's own cache (Redis when REDIS_URL is set, in-memory otherwise), keyed per
tenant and upstream deployment, and guarded so a down or slow Redis never fails a request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os

from . import litellm_compat as compat
from .env import env_float, env_int
from .litellm_compat import RedisCache
from .metrics import CACHE_ERRORS

log = logging.getLogger("carrot.cache")
DEFAULT_TTL = 24 * 3600


class GuardedRedisCache(RedisCache):
    """LiteLLM's RedisCache (its circuit breaker fast-fails a dead Redis) plus an overall timeout per
    call, one warning per outage and a metric: LiteLLM's swallows a failed lookup silently."""

    def __init__(self, *, timeout: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.timeout = timeout
        self._outage = False

    def _failed(self, op: str, exc: BaseException) -> None:
        CACHE_ERRORS.inc()
        if not self._outage:
            self._outage = True
            log.warning("Redis cache unavailable (%s failed: %s); serving without cache until it answers again",
                        op, type(exc).__name__)

    def _ok(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("Redis cache reachable again; caching resumed")

    async def async_get_cache(self, key, parent_otel_span=None, **kwargs):
        try:
            async with asyncio.timeout(self.timeout):  # no task of its own, unlike wait_for
                value = await super().async_get_cache(key, parent_otel_span, raise_on_error=True, **kwargs)
        except Exception as e:  # noqa: BLE001 - any Redis failure means "no cached answer"
            self._failed("get", e)
            return None
        self._ok()
        return value

    async def async_set_cache(self, key, value, **kwargs):
        if key is None:
            return None
        try:
            await compat.redis_set(self, key, value, op_timeout=self.timeout, **kwargs)
        except Exception as e:  # noqa: BLE001 - a failed write only loses a cache entry
            self._failed("set", e)
            return None
        self._ok()
        return True


def configure():
    """Install LiteLLM's cache: Redis at REDIS_URL (guarded) or in-memory; TTL from CARROT_CACHE_TTL."""
    ttl = env_int("CARROT_CACHE_TTL", DEFAULT_TTL, minimum=1)
    url = os.environ.get("REDIS_URL")
    backend = GuardedRedisCache(url=url, socket_timeout=0.25, socket_connect_timeout=0.25,
                                timeout=env_float("CARROT_CACHE_TIMEOUT", 0.25, minimum=0.001)) if url else None
    cache = compat.make_cache(ttl, backend)
    compat.install_cache(cache)
    compat.trim_result_cache_overheads()
    log.warning("result cache: %s, ttl %ss", "redis" if url else "in-memory", ttl)
    return cache


def namespace(tenant: str, upstream_models: list[str]) -> str:
    """The cache partition of a request: its tenant and the exact upstream model(s) of its alias,
    so tenants never share answers and a rolled-out model version never serves the old one's."""
    material = json.dumps([tenant, sorted(upstream_models)])
    return "carrot:" + hashlib.sha256(material.encode()).hexdigest()[:24]
