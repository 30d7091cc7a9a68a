"""Upstream failures as clear gateway errors: 502/503/504 naming the upstream URL(s) tried."""

from __future__ import annotations

import time

import litellm

from .errors import GatewayError

STREAM_EOF = "Stream ended before a finish_reason was received"  # LiteLLM's words for a stream cut cleanly


def _router():
    from litellm.proxy import proxy_server

    return proxy_server.llm_router


def upstream_urls(alias: str) -> list[str]:
    """API bases serving `alias` and its configured fallbacks, in the order they are tried."""
    router = _router()
    if router is None:
        return []
    chain = [alias]
    for entry in getattr(router, "fallbacks", None) or ():
        chain += [m for m in entry.get(alias, ()) if m not in chain]
    urls: list[str] = []
    for name in chain:
        for d in router.registry().deployments(name) or ():
            base = (d.get("litellm_params") or {}).get("api_base") or f"<{name}: provider default URL>"
            if base not in urls:
                urls.append(base)
    return urls


def upstream_models(alias: str) -> list[str]:
    """The provider model names behind `alias` (what a cached answer really came from)."""
    router = _router()
    deployments = (router.registry().deployments(alias) or ()) if router is not None else ()
    return [str((d.get("litellm_params") or {}).get("model")) for d in deployments]


def as_gateway_error(exc: Exception, alias: str) -> GatewayError | None:
    """Map an upstream failure to 502 (unreachable / broken), 503 (overloaded) or 504 (timed out),
    and a rate limit to 429 with Retry-After (rpm/tpm windows are per minute)."""
    if isinstance(exc, (litellm.BadRequestError, litellm.AuthenticationError, GatewayError)) or not alias:
        return None
    if isinstance(exc, litellm.RateLimitError):
        retry = str(max(1, 60 - int(time.time()) % 60))
        return GatewayError(429, f"Rate limit reached for model {alias}: {exc.message}", code="rate_limited",
                            headers={"Retry-After": retry})
    text = str(exc)
    where = ", ".join(upstream_urls(alias)) or alias
    if isinstance(exc, litellm.Timeout):
        return GatewayError(504, f"Upstream for model {alias} timed out: {where}", code="upstream_timeout")
    if isinstance(exc, litellm.ServiceUnavailableError):
        return GatewayError(503, f"Upstream for model {alias} is unavailable: {where}", code="upstream_unavailable")
    if any(m in text for m in ("payload is not completed", "peer closed connection", "MidStreamFallbackError",
                               STREAM_EOF)):
        return GatewayError(502, f"Upstream for model {alias} broke off mid-stream: {where}", code="upstream_cut")
    if isinstance(exc, litellm.APIConnectionError) or "Cannot connect" in text or "Connection refused" in text:
        return GatewayError(502, f"Upstream for model {alias} could not be reached: {where}",
                            code="upstream_unreachable")
    if isinstance(exc, (litellm.InternalServerError, litellm.BadGatewayError)):
        return GatewayError(502, f"Upstream for model {alias} failed ({type(exc).__name__}): {where}",
                            code="upstream_error")
    return None
