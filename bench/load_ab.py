"""A/B of the gateway's cost under load: this checkout against another one (e.g. `main` in a second
worktree), with bare LiteLLM as the reference, in interleaved rounds on a shared, noisy machine.

All three proxies run at once on the same fake upstream, Redis and RAG store; each round sends
`bench/load.py`'s request mix from 16 clients to each target in turn (the order rotates every round),
so load from elsewhere falls on all three alike. Per target it prints the proxy's own CPU ms per
answered request (from /proc, summed over the rounds), requests/s and the p95 over all rounds,
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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import Target, index_for_rag, run_rounds
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
    targets = {
        "bare LiteLLM": Target(ProxyProcess(fake.url, config=bare_config(tmp), env={"PYTHONPATH": str(ROOT)},
                                            wait=False), gateway=False),
        f"gateway {args.other.name}": Target(ProxyProcess(fake.url, env={**env, "PYTHONPATH": str(other)}, wait=False,
                                                          root=other), gateway=True),
        "gateway (this)": Target(ProxyProcess(fake.url, env={**env, "PYTHONPATH": str(ROOT)}, wait=False), gateway=True),
    }

    def progress(i: int) -> None:
        print(f"round {i + 1}: " + ", ".join(f"{n} {t.cpu_ms:.1f}" for n, t in targets.items())
              + f" CPU ms/req so far; load average {os.getloadavg()[0]:.1f}", flush=True)

    try:
        for name, t in targets.items():
            t.p.wait_started()
            if t.gateway:
                print(f"{name}: {_loaded_from(t.p.log())}", flush=True)
        asyncio.run(run_rounds(targets, args.clients, args.seconds, args.rounds, 10**7, after_round=progress))
    finally:
        for t in targets.values():
            t.p.stop()
        fake.close()
    rows = {name: t.row() for name, t in targets.items()}
    base = rows["bare LiteLLM"]
    print(f"{args.rounds} rounds x {args.seconds:.0f} s per target, {args.clients} clients, interleaved")
    print(f"{'':22} {'answered':>8} {'CPU ms/req':>10} {'/bare':>6} {'req/s':>6} {'/bare':>6} {'p95 ms':>7} {'/bare':>6}")
    for name, r in rows.items():
        print(f"{name:22} {r['answered']:8} {r['cpu_ms']:10.1f} {r['cpu_ms'] / base['cpu_ms']:5.2f}x {r['rps']:6.1f} "
              f"{r['rps'] / base['rps']:5.2f}x {r['p95']:7.0f} {r['p95'] / base['p95']:5.2f}x")
    bad = sum(r["non200"] + r["lost"] for r in rows.values())
    print("OK" if not bad else f"FAILED: {bad} answers other than 200 or lost")
    return 0 if not bad else 1


def _loaded_from(log: str) -> str:
    """The gateway's start-up line naming the files it runs (a mix of two checkouts shows there)."""
    lines = [line for line in log.splitlines() if "carrot_hooks.gateway from " in line]
    return lines[0].split("carrot_hooks.gateway from ", 1)[1] if lines else \
        "no start-up line naming its files (a checkout older than that line): what it loaded is not shown"


if __name__ == "__main__":
    sys.exit(main())
