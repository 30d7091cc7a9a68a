"""One structured JSON log line per request, with secrets and PII scrubbed before anything is written.

Installed by the gateway (`install()`, from `CarrotGateway.__init__`);
do not also list it in `litellm_settings.callbacks`. The line carries only
metadata (task type, model, route, latency, tokens, cache hit, guardrail actions); the one
free-text field, an error message, goes through the secret and PII detectors first.
Each failed upstream call also gets an `upstream_attempt` line (a fallback may still answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from litellm.integrations.custom_logger import CustomLogger

from .context import get_context

log = logging.getLogger("carrot.requests")


def scrub(text: str) -> str:
    """`text` with secrets and PII replaced by `[REDACTED:<kind>]` (used on anything free-form)."""
    from .guardrails.engines import shared_engines
    from .guardrails.rules import redact

    engines = shared_engines()
    text = redact(text, engines.detectors().output.secrets.scan(text))
    try:
        pii = engines.pii().analyze(text)
    except Exception:  # noqa: BLE001 - the log line must not fail; drop the text instead of leaking it
        return "[REDACTED:unscrubbable]"
    for h in reversed(pii):
        text = text[: h.start] + f"[REDACTED:{h.entity}]" + text[h.end :]
    return text


def _usage(response) -> tuple[int | None, int | None]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None, None
    return getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)


def request_record(kwargs: dict, response, start_time, end_time, error: BaseException | None = None,
                   event: str = "request") -> dict:
    """The log record for one finished request (no prompt or answer text)."""
    ctx = get_context(kwargs.get("litellm_params")) or get_context(kwargs)
    slo = kwargs.get("standard_logging_object") or {}
    prompt_tokens, completion_tokens = _usage(response)
    if start_time is not None and hasattr(end_time, "__sub__"):
        latency = (end_time - start_time).total_seconds()
    else:  # a request that failed for good: timed from the gateway's own start
        latency = time.perf_counter() - ctx.started if ctx else None
    record = {
        "event": event,
        "ts": round(time.time(), 3),
        "call_id": kwargs.get("litellm_call_id"),
        "status": "error" if error is not None else "ok",
        "task_type": ctx.task_type if ctx else None,
        "risk": ctx.risk if ctx else None,
        "model": (ctx.model_alias if ctx else None) or slo.get("model_group") or kwargs.get("model"),
        "route": ctx.rule_id if ctx else None,
        "prompt_pack": ctx.pack if ctx else None,
        "stream": bool(kwargs.get("stream")),
        "latency_ms": round(latency * 1000, 1) if latency is not None else None,
        "input_tokens": prompt_tokens if prompt_tokens is not None else slo.get("prompt_tokens"),
        "output_tokens": completion_tokens if completion_tokens is not None else slo.get("completion_tokens"),
        "cache_hit": bool(slo.get("cache_hit") or kwargs.get("cache_hit")),
        "guardrails": [
            {"guardrail": v.guardrail, "action": v.action, "rule_ids": list(v.rule_ids)}
            for v in (ctx.verdicts if ctx else [])
            if v.action != "pass"
        ],
    }
    if error is not None:
        record["error"] = scrub(f"{type(error).__name__}: {error}")[:500]
    return record


class RequestLog(CustomLogger):
    """Writes `request_record` as one JSON line on the `carrot.requests` logger."""

    def __init__(self) -> None:
        super().__init__()
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        """One line for a finished request (streams: once, at the end)."""
        log.info(json.dumps(request_record(kwargs, response_obj, start_time, end_time), default=str))

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        """One `upstream_attempt` line per failed upstream call: a fallback may still answer the request.
        A request the gateway never routed (refused by auth or a hook) reached no upstream: no line."""
        if (get_context(kwargs.get("litellm_params")) or get_context(kwargs)) is None:
            return
        error = kwargs.get("exception") or Exception("unknown error")
        record = await asyncio.to_thread(request_record, kwargs, response_obj, start_time, end_time, error,
                                         event="upstream_attempt")  # its scrub asks a PII process
        log.info(json.dumps(record, default=str))

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict,
                                           traceback_str=None):
        """One `request` line for a request that failed for good (after any fallback), scrubbed."""
        record = await asyncio.to_thread(request_record, request_data, None, None, None, original_exception)
        log.info(json.dumps(record, default=str))


request_log = RequestLog()


def install() -> None:
    """Add the request log to LiteLLM's callbacks once per process."""
    from .litellm_compat import add_callback

    add_callback(request_log)
