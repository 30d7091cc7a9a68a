"""The gateway's Prometheus series (the list is mirrored in deploy/metrics.yaml for the dashboard).

Registered on prometheus_client's default registry, which the proxy serves on /metrics.
Label values are bounded: task types, aliases, rule ids and statuses, never prompt text or users.
"""

from __future__ import annotations

import functools
import time

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("carrot_requests_total", "Requests through the gateway.",
                   ["task_type", "model", "route", "cache_hit", "status"])
REQUEST_DURATION = Histogram("carrot_request_duration_seconds", "End-to-end request latency.",
                             ["task_type", "model"],
                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128))
TOKENS = Counter("carrot_tokens_total", "Tokens by direction (input, output).", ["direction", "model"])
HOOK_DURATION = Histogram("carrot_hook_duration_seconds", "Time spent in each gateway stage.", ["stage"],
                          buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
RAG_DURATION = Histogram("carrot_rag_retrieval_duration_seconds", "Retrieval time (query embedding + search).",
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1))
GUARDRAIL_ACTIONS = Counter("carrot_guardrail_actions_total",
                            "Guardrail decisions by guardrail and action (pass, flag, redact, block, restore, escalate, unrestored).",
                            ["guardrail", "action"])
CACHE_ERRORS = Counter("carrot_cache_errors_total", "Result-cache operations that failed or timed out.")
ROLLOUT_STATE = Gauge("carrot_rollout_state", "Traffic share of each arm of a canary (0..1; candidate 0 after a rollback).",
                      ["alias", "arm"], multiprocess_mode="max")
ROLLBACKS = Counter("carrot_rollout_rollbacks_total", "Automatic canary rollbacks, by the check that failed.",
                    ["alias", "reason"])
UPSTREAM_UNREACHABLE = Counter("carrot_upstream_unreachable_total",
                               "Upstream calls that could not connect, by API base (carrot_hooks/outages.py).",
                               ["upstream"])


def timed_stage(stage: str):
    """Decorator: observe an async hook's duration as `carrot_hook_duration_seconds{stage=...}`."""
    def wrap(fn):
        @functools.wraps(fn)
        async def inner(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                HOOK_DURATION.labels(stage).observe(time.perf_counter() - t0)
        return inner
    return wrap
