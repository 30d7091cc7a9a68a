"""Scale-out: throughput of one gateway replica vs two sharing one Redis, in one run.

Both phases send the same number of fresh (uncached) chat requests at the same concurrency
to the fake upstream through the real proxy; the two-replica phase spreads them round-robin,
as a load balancer would. The CPU each process used per request shows where the time goes:
on a 2-core machine the load generator, the fake upstream and the replicas share two cores,
which caps the gain. Usage: .venv/bin/python bench/replicas.py [--requests 300] [--concurrency 8]
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
from tests.services import redis_url

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


def run_phase(name: str, replicas: list[ProxyProcess], n: int, concurrency: int, http: httpx.Client) -> dict:
    """`n` fresh requests round-robin over `replicas`; latency, throughput and CPU per request."""
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

    for _ in range(5 * len(replicas)):  # warm every replica's connections and caches
        send(None)
    before = {p.port: cpu_seconds(p.proc.pid) for p in replicas}
    me_before = cpu_seconds(os.getpid(), children=False)  # the proxies are our children
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [x for x in pool.map(send, range(n)) if x is not None]
    wall = time.perf_counter() - t0
    lat = [x for x in results if isinstance(x, float)]
    failures = Counter(x for x in results if isinstance(x, str))
    proxy_cpu = sum(cpu_seconds(p.proc.pid) - before[p.port] for p in replicas)
    me_cpu = cpu_seconds(os.getpid(), children=False) - me_before
    q = statistics.quantiles(lat, n=100)
    return {"name": name, "done": len(lat), "failed": dict(failures), "rps": len(lat) / wall, "p50": q[49] * 1000, "p95": q[94] * 1000,
            "proxy_ms": proxy_cpu / len(results) * 1000, "bench_ms": me_cpu / len(results) * 1000,
            "busy": (proxy_cpu + me_cpu) / wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    fake = FakeUpstream()
    env = {"REDIS_URL": redis_url()}
    replicas: list[ProxyProcess] = []
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.concurrency * 2))
    try:
        replicas.append(ProxyProcess(fake.url, env=env))
        replicas.append(ProxyProcess(fake.url, env=env))
        one = run_phase("1 replica", replicas[:1], args.requests, args.concurrency, http)
        two = run_phase("2 replicas", replicas, args.requests, args.concurrency, http)
    finally:
        for p in replicas:
            p.stop()
        fake.close()
    print(f"{args.requests} fresh requests per phase, concurrency {args.concurrency}, "
          f"{psutil.cpu_count()} cores, shared Redis")
    print(f"{'':11} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'proxy CPU ms/req':>17} "
          f"{'bench+fake CPU ms/req':>22} {'cores busy':>11}")
    for r in (one, two):
        print(f"{r['name']:11} {r['rps']:7.1f} {r['p50']:8.1f} {r['p95']:8.1f} {r['proxy_ms']:17.2f} "
              f"{r['bench_ms']:22.2f} {r['busy']:11.2f}"
              + (f"  failed: {r['failed']}" if r["failed"] else ""))
    print(f"throughput ratio 2 replicas / 1 replica: {two['rps'] / one['rps']:.2f}x")
    ceiling = psutil.cpu_count() / ((two["proxy_ms"] + two["bench_ms"]) / 1000)
    print(f"CPU ceiling on this machine at that cost per request: {ceiling:.0f} req/s "
          f"(proxies use {two['proxy_ms'] / (two['proxy_ms'] + two['bench_ms']):.0%} of the CPU per request)")


if __name__ == "__main__":
    main()
