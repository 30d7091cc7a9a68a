"""Scale-out: throughput of one gateway replica vs two sharing one Redis, in one run.

Both phases send the same number of fresh (uncached) chat requests at the same concurrency
to the fake upstream through the real proxy; the two-replica phase spreads them round-robin,
as a load balancer would. The CPU each process used per request shows where the time goes:
on a 2-core machine the load generator, the fake upstream, Redis and the replicas share two
cores, which caps the gain. Exits 1 when any request (warm-up included) fails.
Usage: .venv/bin/python bench/replicas.py [--requests 300] [--concurrency 8]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import itertools
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess
from tests.services import RedisServer, start_private_redis

MAX_SECONDS = 120  # per phase, whatever --requests says


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU of a process (and, by default, its child processes) so far."""
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True) if children else ():
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def run_phase(name: str, replicas: list[ProxyProcess], redis: RedisServer, n: int, concurrency: int,
              http: httpx.Client) -> dict:
    """`n` fresh requests round-robin over `replicas`; latency, throughput, failures and CPU per request."""
    targets = itertools.cycle(replicas)
    lock = threading.Lock()
    deadline = time.monotonic() + MAX_SECONDS

    def send(_):
        if time.monotonic() > deadline:
            return None
        with lock:
            p = next(targets)
        t = time.perf_counter()
        try:
            r = http.post(f"{p.base_url}/v1/chat/completions", headers=p.headers(), json={
                "model": "ds-coder-6.7b", "max_tokens": 16,
                "messages": [{"role": "user", "content": f"complete this line {uuid.uuid4()}"}]})
        except httpx.HTTPError as e:
            return type(e).__name__
        return time.perf_counter() - t if r.status_code == 200 else f"HTTP {r.status_code}"

    warm = [send(None) for _ in range(5 * len(replicas))]  # every replica's connections and caches
    before = {p.port: cpu_seconds(p.proc.pid) for p in replicas}
    redis_before = cpu_seconds(redis.proc.pid, children=False)
    me_before = cpu_seconds(os.getpid(), children=False)  # the proxies are our children
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [x for x in pool.map(send, range(n)) if x is not None]
    wall = time.perf_counter() - t0
    lat = [x for x in results if isinstance(x, float)]
    failures = Counter(x for x in results + warm if isinstance(x, str))
    proxy_cpu = sum(cpu_seconds(p.proc.pid) - before[p.port] for p in replicas)
    redis_cpu = cpu_seconds(redis.proc.pid, children=False) - redis_before
    me_cpu = cpu_seconds(os.getpid(), children=False) - me_before
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    sent = max(len(results), 1)
    return {"name": name, "done": len(lat), "unsent": n - len(results), "failed": dict(failures),
            "rps": len(lat) / wall, "p50": q[49] * 1000, "p95": q[94] * 1000,
            "proxy_ms": proxy_cpu / sent * 1000, "redis_ms": redis_cpu / sent * 1000, "bench_ms": me_cpu / sent * 1000,
            "busy": (proxy_cpu + redis_cpu + me_cpu) / wall}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    fake = FakeUpstream()
    redis = start_private_redis("bench-replicas")  # its own: no other traffic, and its CPU is measurable
    env = {"REDIS_URL": redis.url}
    replicas: list[ProxyProcess] = []
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.concurrency * 2))
    try:
        replicas.append(ProxyProcess(fake.url, env=env))
        replicas.append(ProxyProcess(fake.url, env=env))
        one = run_phase("1 replica", replicas[:1], redis, args.requests, args.concurrency, http)
        two = run_phase("2 replicas", replicas, redis, args.requests, args.concurrency, http)
    finally:
        for p in replicas:
            p.stop()
        fake.close()
        redis.cleanup()
    print(f"{args.requests} fresh requests per phase, concurrency {args.concurrency}, "
          f"{psutil.cpu_count()} cores, shared Redis")
    print(f"{'':11} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8}   CPU ms/req: {'proxies':>8} {'redis':>6} "
          f"{'bench+fake':>10} {'cores busy':>11}")
    for r in (one, two):
        print(f"{r['name']:11} {r['rps']:7.1f} {r['p50']:8.1f} {r['p95']:8.1f}   {'':11} {r['proxy_ms']:8.2f} "
              f"{r['redis_ms']:6.2f} {r['bench_ms']:10.2f} {r['busy']:11.2f}"
              + (f"  not sent (past {MAX_SECONDS} s): {r['unsent']}" if r["unsent"] else "")
              + (f"  FAILED: {r['failed']}" if r["failed"] else ""))
    print(f"throughput ratio 2 replicas / 1 replica: {two['rps'] / one['rps']:.2f}x")
    total = two["proxy_ms"] + two["redis_ms"] + two["bench_ms"]
    print(f"CPU ceiling on this machine at that cost per request: {psutil.cpu_count() / (total / 1000):.0f} req/s "
          f"(proxies use {two['proxy_ms'] / total:.0%} of the CPU per request, Redis {two['redis_ms'] / total:.0%})")
    failed = sum(sum(r["failed"].values()) for r in (one, two))
    if failed:
        print(f"{failed} requests failed: the numbers above do not measure a healthy gateway", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
