"""Prose under load: this checkout against another one, 16 clients of which 2 send 4 KB prose prompts full of
names and phone numbers (the PII stage's most expensive input) and 14 send a one-line question.

Shows what a worker's PII analysis costs the other requests it serves: per gateway, the plain requests' p50/p95
and the prose requests' count and p50, with this checkout's ratios to the other. The two gateways take turns
(rounds alternate their order) on one fake upstream and Redis; every prompt is unique (no cache or memo hits).

Usage: .venv/bin/python bench/prose_load.py OTHER_CHECKOUT [--rounds 2] [--seconds 25]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from carrot_hooks.serve import ROOT
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess
from tests.services import redis_url

CLIENTS, PROSE_CLIENTS = 16, 2
PROSE = " ".join(f"Yesterday Maria Gonzalez met Jan Kowalski and Priya Raman in Lisbon about release {i}; Tom Becker "
                 f"will call Aiko Tanaka at +1 415-555-01{i:02d} afterwards." for i in range(32))[:4096]


async def round_(p: ProxyProcess, seconds: float, plain: list[float], prose: list[float]) -> None:
    """CLIENTS closed-loop clients for `seconds`, latencies appended; any answer but 200 ends the run."""
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=120) as http:
        async def client(is_prose: bool) -> None:
            while time.perf_counter() < stop:
                text = f"[{uuid.uuid4().hex}] " + (PROSE if is_prose else "what does functools.cache do?")
                body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
                t = time.perf_counter()
                r = await http.post(f"{p.base_url}/v1/chat/completions", json=body,
                                    headers={**p.headers(), "X-Task-Type": "chat"})
                if r.status_code != 200:
                    raise SystemExit(f"{p.base_url}: {r.status_code} {r.text[:300]}")
                (prose if is_prose else plain).append(time.perf_counter() - t)

        await asyncio.gather(*(client(i < PROSE_CLIENTS) for i in range(CLIENTS)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("other", type=Path, help="the other checkout (its carrot_hooks is imported instead of ours)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=25.0, help="per gateway per round")
    args = ap.parse_args()
    other = args.other.resolve()
    fake = FakeUpstream()
    env = {"REDIS_URL": redis_url()}
    gateways = {other.name: ProxyProcess(fake.url, env={**env, "PYTHONPATH": str(other)}, wait=False, root=other),
                "this": ProxyProcess(fake.url, env={**env, "PYTHONPATH": str(ROOT)}, wait=False)}
    lat = {name: ([], []) for name in gateways}
    try:
        for p in gateways.values():
            p.wait_started()
        for p in gateways.values():
            asyncio.run(round_(p, 5, [], []))  # warm-up, not counted
        for i in range(args.rounds):
            for name in (list(gateways) if i % 2 == 0 else list(gateways)[::-1]):
                asyncio.run(round_(gateways[name], args.seconds, *lat[name]))
    finally:
        for p in gateways.values():
            p.stop()
        fake.close()
    rows = {}
    for name, (plain, prose) in lat.items():
        q = statistics.quantiles(plain, n=100)
        rows[name] = (q[49] * 1000, q[94] * 1000, len(prose), statistics.median(prose) * 1000)
    print(f"{args.rounds} rounds x {args.seconds:.0f} s per gateway, {CLIENTS} clients ({PROSE_CLIENTS} sending "
          f"{len(PROSE)} characters of prose)")
    print(f"{'':12} {'plain p50':>9} {'plain p95':>9} {'prose answered':>14} {'prose p50':>9}")
    for name, (p50, p95, n, prose50) in rows.items():
        print(f"{name:12} {p50:9.0f} {p95:9.0f} {n:14} {prose50:9.0f}")
    a, b = rows["this"], rows[other.name]
    print(f"this / {other.name}: plain p50 {a[0] / b[0]:.2f}x, p95 {a[1] / b[1]:.2f}x; prose answered "
          f"{a[2] / b[2]:.2f}x, p50 {a[3] / b[3]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
