"""A/B of the gateway's cost under load: this checkout against another one (e.g. `main` in a second
worktree), with bare LiteLLM as the reference, in interleaved rounds on a shared, noisy machine.

All three proxies run at once on the same fake upstream, Redis and RAG store; each round sends
`bench/load.py`'s request mix from 16 clients to each target in turn (the order rotates every round),
so load from elsewhere falls on all three alike. Per target it prints the proxy's own CPU ms per
answered request (from /proc, summed over the rounds), requests/s and the median of the rounds' p95,
each with its ratio to bare LiteLLM; per round, the CPU ms of each and the machine's load average.
Exit status 1 on any answer other than 200 or a lost request.

Usage: .venv/bin/python bench/load_ab.py OTHER_CHECKOUT [--rounds 6] [--seconds 20] [--clients 16]
The other checkout must have the same package layout: its proxy runs with that checkout's
`litellm_config.yaml`, `policy/` and working directory, and its `carrot_hooks` first on PYTHONPATH; each
gateway's start-up line naming the files it loaded is printed before the rounds.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import index_for_rag, run_load
from bench.overhead import bare_config
from carrot_hooks.serve import ROOT
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess
from tests.services import pgvector_url, redis_url


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("other", type=Path, help="the other checkout (its carrot_hooks is imported instead of ours)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0, help="per target per round")
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    if not (args.other / "carrot_hooks" / "gateway.py").is_file():
        ap.error(f"{args.other} has no carrot_hooks/gateway.py")
    fake = FakeUpstream()
    tmp = Path(tempfile.mkdtemp(prefix="carrot-load-ab-"))
    store = pgvector_url()
    index_for_rag(store, tmp)
    env = {"REDIS_URL": redis_url(), "PGVECTOR_URL": store}
    other = args.other.resolve()  # its config, policy/ and working directory too: LiteLLM loads the config's
    # callbacks and guardrails by file path from the config's directory
    targets = {  # name -> (proxy, is the gateway)
        "bare LiteLLM": (ProxyProcess(fake.url, config=bare_config(tmp), env={"PYTHONPATH": str(ROOT)}, wait=False),
                         False),
        f"gateway {args.other.name}": (ProxyProcess(fake.url, env={**env, "PYTHONPATH": str(other)}, wait=False,
                                                    root=other), True),
        "gateway (this)": (ProxyProcess(fake.url, env={**env, "PYTHONPATH": str(ROOT)}, wait=False), True),
    }
    totals = {name: {"answered": 0, "cpu_s": 0.0, "wall_s": 0.0, "p95": [], "bad": 0} for name in targets}
    try:
        for name, (proxy, gateway) in targets.items():
            proxy.wait_started()
            if gateway:
                print(f"{name}: {_loaded_from(proxy.log())}", flush=True)
        names = list(targets)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                proxy, gateway = targets[name]
                res = asyncio.run(run_load(proxy, gateway, args.clients, args.seconds, 10**7))
                t = totals[name]
                t["answered"] += res["answered"]
                t["cpu_s"] += res["cpu_ms"] * res["answered"] / 1000
                t["wall_s"] += res["answered"] / res["rps"]
                t["p95"].append(res["p95"])
                t["bad"] += res["non200"] + res["lost"]
            print(f"round {r + 1}: " + ", ".join(f"{n} {t['cpu_s'] * 1000 / max(1, t['answered']):.1f}"
                                                 for n, t in totals.items())
                  + f" CPU ms/req so far; load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for proxy, _ in targets.values():
            proxy.stop()
        fake.close()
    base = totals["bare LiteLLM"]
    base_cpu, base_rps, base_p95 = (base["cpu_s"] / base["answered"], base["answered"] / base["wall_s"],
                                    statistics.median(base["p95"]))
    print(f"{args.rounds} rounds x {args.seconds:.0f} s per target, {args.clients} clients, interleaved")
    print(f"{'':22} {'answered':>8} {'CPU ms/req':>10} {'/bare':>6} {'req/s':>6} {'/bare':>6} {'p95 ms':>7} {'/bare':>6}")
    for name, t in totals.items():
        cpu, rps, p95 = t["cpu_s"] / t["answered"], t["answered"] / t["wall_s"], statistics.median(t["p95"])
        print(f"{name:22} {t['answered']:8} {cpu * 1000:10.1f} {cpu / base_cpu:5.2f}x {rps:6.1f} {rps / base_rps:5.2f}x "
              f"{p95:7.0f} {p95 / base_p95:5.2f}x")
    bad = sum(t["bad"] for t in totals.values())
    print("OK" if not bad else f"FAILED: {bad} answers other than 200 or lost")
    return 0 if not bad else 1


def _loaded_from(log: str) -> str:
    """The gateway's start-up line naming the files it runs (a mix of two checkouts shows there)."""
    lines = [line for line in log.splitlines() if "carrot_hooks.gateway from " in line]
    return lines[0].split("carrot_hooks.gateway from ", 1)[1] if lines else \
        "no start-up line naming its files (a checkout older than that line): what it loaded is not shown"


if __name__ == "__main__":
    sys.exit(main())
