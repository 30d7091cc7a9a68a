"""An unreachable upstream is one log line per outage, naming it, and a counter; not a traceback per request.

LiteLLM logs each request that fails for good once, with its exception (`log_llm_api_exception`,
before any failure hook rewrites the message). A filter on LiteLLM's loggers reads that record: each
upstream (host:port) the error could not connect to, fallbacks included, is marked down, logged once
when the outage starts and counted every time in `carrot_upstream_unreachable_total{upstream}`; the
record itself and LiteLLM's other connection-failure error records are dropped (kept, with their
tracebacks, at CARROT_LOG_LEVEL=debug). A success event from the upstream ends the outage (logged
once). The client still gets the 502 naming the URL (carrot_hooks/upstream.py).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import urlsplit

import litellm
from litellm.integrations.custom_logger import CustomLogger

from .metrics import UPSTREAM_UNREACHABLE

log = logging.getLogger("carrot.upstream")

# how aiohttp/httpx/LiteLLM word a refused or unresolvable connection (mapped errors keep only the text)
_MARKERS = ("Cannot connect to host", "Connection refused", "Connect call failed", "Name or service not known",
            "nodename nor servname", "All connection attempts failed", "No route to host")
# aiohttp names the server it could not reach: "Cannot connect to host 127.0.0.1:8000 ssl:..."
_HOST = re.compile(r"Cannot connect to host (\[[^\]]+\]:\d+|[^\s:]+:\d+)")
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router")


def is_connection_failure(exc: BaseException | None) -> bool:
    """Whether `exc` (or what it wraps) is a failure to connect, not a slow or failing upstream."""
    if exc is None or isinstance(exc, litellm.Timeout):
        return False
    return isinstance(exc, ConnectionError) or _names_connection_failure(str(exc))


def _names_connection_failure(text: str) -> bool:
    return any(m in text for m in _MARKERS)


def unreachable_upstreams(exc: BaseException | None, api_base: str | None = None) -> list[str]:
    """host:port of each server `exc` says could not be connected to (fallbacks included), else `api_base`'s."""
    if not is_connection_failure(exc):
        return []
    found = list(dict.fromkeys(_HOST.findall(str(exc))))
    return found or ([urlsplit(api_base).netloc] if api_base else [])


def _api_base(kwargs: dict) -> str | None:
    return (kwargs.get("litellm_params") or {}).get("api_base") or kwargs.get("api_base")


class Outages(CustomLogger):
    """Per-upstream outage state: failed requests mark it down, an answer from it ends the outage."""

    def __init__(self) -> None:
        super().__init__()
        self._down: dict[str, int] = {}  # host:port -> requests failed since the outage began
        self._lock = threading.Lock()

    def failed(self, upstream: str, exc: BaseException) -> None:
        UPSTREAM_UNREACHABLE.labels(upstream).inc()
        with self._lock:
            first = upstream not in self._down
            self._down[upstream] = self._down.get(upstream, 0) + 1
        if first:
            reason = " ".join(str(exc).split())[:200]
            log.error("upstream %s is unreachable (%s); further failures are counted in "
                      "carrot_upstream_unreachable_total until it answers again", upstream, reason)

    def answered(self, upstream: str) -> None:
        with self._lock:
            failures = self._down.pop(upstream, 0)
        if failures:
            log.warning("upstream %s answers again (%d request(s) failed while it was unreachable)",
                        upstream, failures)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        api_base = _api_base(kwargs)
        if api_base and not kwargs.get("cache_hit"):
            self.answered(urlsplit(api_base).netloc)


class _ConnectionFailureRecords(logging.Filter):
    """LiteLLM's error records about connection failures: the per-request one marks outages; all are dropped."""

    def __init__(self, drop: bool) -> None:
        super().__init__()
        self.drop = drop

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if not (is_connection_failure(exc) or _names_connection_failure(record.getMessage())):
            return True
        if exc is not None:  # the once-per-request record; fallbacks' records carry no exception
            for upstream in unreachable_upstreams(exc):
                outages.failed(upstream, exc)
        return not self.drop


outages = Outages()
_filter = _ConnectionFailureRecords(drop=os.environ.get("CARROT_LOG_LEVEL", "").lower() != "debug")


def install() -> None:
    """Add the outage callback and the log filter once per process."""
    if outages not in litellm.callbacks:
        litellm.logging_callback_manager.add_litellm_callback(outages)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s carrot %(levelname)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.propagate = False
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).addFilter(_filter)
