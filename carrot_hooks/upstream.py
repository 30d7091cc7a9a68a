"""Upstream failures as clear gateway errors: 502/503/504 naming the upstream URL(s) tried, never its body.

The mapping is a table (like httpx's exception map): the first row whose LiteLLM exception type
matches, and whose cause types (if any) occur in the exception's cause chain, gives our status.
"""

from __future__ import annotations

import json
import time
from typing import NamedTuple

import aiohttp
import httpx
import litellm
from litellm.exceptions import MidStreamFallbackError

from . import litellm_compat as compat
from .errors import GatewayError


class Row(NamedTuple):
    raised: tuple[type[BaseException], ...]  # LiteLLM's exception type(s)
    causes: tuple[type[BaseException], ...]  # transport errors in its cause chain; () = any
    status: int
    code: str
    message: str  # formatted with alias, where
    origin: tuple[str, ...] = ()  # the cause passed through a module whose path holds one of these; () = anywhere


# LiteLLM hands a chat stream's clean EOF to its error mapping without raising it: the cut shows
# as a MidStreamFallbackError inside the APIConnectionError (a raised one is 503, the row above).
CUT = (httpx.RemoteProtocolError, aiohttp.ClientPayloadError, MidStreamFallbackError)
UNREACHABLE = (httpx.ConnectError, aiohttp.ClientConnectorError, ConnectionRefusedError)
# What reading an answer that did arrive fails with (not JSON, a field missing or of the wrong type). LiteLLM wraps
# it, like any error inside its provider code, in APIConnectionError (APIError when the body is not JSON): without
# a transport error in the chain the upstream was reached.
INVALID = (ValueError, TypeError, KeyError, AttributeError)
ERROR_MAP: tuple[Row, ...] = (
    Row((litellm.Timeout,), (), 504, "upstream_timeout", "Upstream for model {alias} timed out: {where}"),
    Row((litellm.ServiceUnavailableError,), (), 503, "upstream_unavailable",
        "Upstream for model {alias} is unavailable: {where}"),
    Row((litellm.APIConnectionError, litellm.InternalServerError), CUT,
        502, "upstream_cut", "Upstream for model {alias} broke off mid-stream: {where}"),
    Row((litellm.APIConnectionError, litellm.InternalServerError), UNREACHABLE, 502, "upstream_unreachable",
        "Upstream for model {alias} could not be reached: {where}"),
    Row((litellm.APIConnectionError, litellm.APIError), INVALID, 502, "upstream_invalid_response",
        "Upstream for model {alias} returned an invalid response: {where}", compat.PROVIDER_RESPONSE_CODE),
    # Ollama reports a failure during generation as an {"error": ...} line; LiteLLM's chunk parser fails on it
    # (KeyError 'message') and raises a 400 as if the client had erred. An upstream's own 400 has its
    # HTTPStatusError in the chain instead.
    Row((litellm.BadRequestError,), (KeyError,), 502, "upstream_error",
        "Upstream for model {alias} failed mid-stream: {where}", compat.OLLAMA_CODE),
    # LiteLLM's Anthropic adapter (/v1/messages) parses the upstream's tool-call arguments outside its exception
    # mapping: a bare ValueError from the JSONDecodeError
    Row((ValueError,), (json.JSONDecodeError,), 502, "upstream_invalid_response",
        "Upstream for model {alias} returned a tool call whose arguments are not JSON: {where}",
        compat.TOOL_ARGUMENT_REPAIR),
    Row((litellm.InternalServerError, litellm.BadGatewayError, litellm.APIConnectionError, litellm.APIError), (),
        502, "upstream_error", "Upstream for model {alias} failed ({kind}): {where}"),
    # an upstream 404: the deployment's model is not there (not pulled, wrong tag), ours to fix
    Row((litellm.NotFoundError,), (), 502, "upstream_error", "Upstream for model {alias} failed ({kind}): {where}"),
    # an upstream 401/403 refuses the gateway's own credentials (the client's key was checked already): ours to
    # fix, not the client's (a 401 would send Claude Code or Codex to log in again)
    Row((litellm.AuthenticationError, litellm.PermissionDeniedError), (), 502, "upstream_auth",
        "Upstream for model {alias} refused the gateway's credentials ({kind}): {where}"),
)


class StreamCut(litellm.APIConnectionError):
    """A FIM stream the upstream ended cleanly without its final chunk (LiteLLM raises this for chat only)."""

    def __init__(self, model: str):
        super().__init__(message="Stream ended before a finish_reason was received",
                         llm_provider="text-completion-openai", model=model)
        self.__cause__ = httpx.RemoteProtocolError(self.message)


def cause_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it was raised from or wraps (`__cause__`, `__context__`, `original_exception`)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen) or len(seen) > 16:
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "original_exception", None)]
    return [e for e in seen if isinstance(e, BaseException)]


def raised_in(exc: BaseException, origin: tuple[str, ...]) -> bool:
    """Whether `exc` passed through a module whose path holds one of `origin` on its way up (() : anywhere)."""
    tb = exc.__traceback__
    while origin and tb is not None:
        if any(o in tb.tb_frame.f_code.co_filename.replace("\\", "/") for o in origin):
            return True
        tb = tb.tb_next
    return not origin


def upstream_urls(alias: str) -> list[str]:
    """API bases serving `alias` and its configured fallbacks, in the order they are tried."""
    urls: list[str] = []
    for name in [alias, *compat.fallbacks(alias)]:
        for d in compat.deployments(name):
            base = (d.get("litellm_params") or {}).get("api_base") or f"<{name}: provider default URL>"
            if base not in urls:
                urls.append(base)
    return urls


def upstream_models(alias: str) -> list[str]:
    """The provider model names behind `alias` (what a cached answer really came from)."""
    return [str((d.get("litellm_params") or {}).get("model")) for d in compat.deployments(alias)]


def tools_capable(alias: str) -> bool:
    """Whether every deployment of `alias` can call tools (litellm_config.yaml model_info.supports_function_calling)."""
    found = compat.deployments(alias)
    return bool(found) and all((d.get("model_info") or {}).get("supports_function_calling") is True for d in found)


def as_gateway_error(exc: Exception, alias: str) -> GatewayError | None:
    """Our status for an upstream failure by `ERROR_MAP`; a rate limit is 429 with Retry-After (rpm/tpm
    windows are per minute); client errors no row names and our own errors pass through unchanged (None)."""
    if isinstance(exc, GatewayError) or not alias:
        return None
    if isinstance(exc, litellm.RateLimitError):
        retry = str(max(1, 60 - int(time.time()) % 60))
        return GatewayError(429, f"Rate limit reached for model {alias}: {exc.message}", code="rate_limited",
                            headers={"Retry-After": retry})
    chain = cause_chain(exc)
    for row in ERROR_MAP:
        if isinstance(exc, row.raised) and (not row.causes or any(
                isinstance(e, row.causes) and raised_in(e, row.origin) for e in chain)):
            where = ", ".join(upstream_urls(alias)) or alias
            return GatewayError(row.status, row.message.format(alias=alias, where=where, kind=type(exc).__name__),
                                code=row.code)
    return None
