"""What each guardrail costs under load: the full gateway, the gateway with one guardrail of
`litellm_config.yaml` left out at a time and with all of them left out, and bare LiteLLM as the reference.

All proxies run at once on the same fake upstream, Redis and RAG store, and take turns in interleaved rounds
of `bench/load.py`'s request mix (16 clients), so load from elsewhere falls on all alike. Per variant it prints
the proxy's CPU ms per answered request, requests/s and p95 with their ratios to bare LiteLLM, and the CPU a
guardrail costs: the full gateway's CPU ms per request minus that of the variant without it. What is left
with every guardrail out is the cost of the gateway callback (routing, prompt packs, retrieval, the result
cache, metrics, the request log) and of the LiteLLM machinery it switches on.
Exit status 1 on any answer other than 200 or a lost request.

Usage: .venv/bin/python bench/load_parts.py [--rounds 4] [--seconds 15] [--clients 16]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.load import Target, index_for_rag, run_rounds
from bench.overhead import bare_config
from carrot_hooks.serve import ROOT
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess
from tests.services import pgvector_url, redis_url

FULL, NONE = "gateway, every guardrail", "gateway, no guardrail"


def variant_configs(tmp: Path) -> dict[str, Path]:
    """The gateway's config as shipped, without each of its guardrails in turn, and without any."""
    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    names = [g["guardrail_name"] for g in cfg.get("guardrails", [])]
    variants = {FULL: (), **{f"gateway without {n}": (n,) for n in names}, NONE: tuple(names)}
    paths = {}
    for i, (label, dropped) in enumerate(variants.items()):
        kept = [g for g in cfg.get("guardrails", []) if g["guardrail_name"] not in dropped]
        path = tmp / f"variant-{i}.yaml"
        path.write_text(yaml.safe_dump({**cfg, "guardrails": kept}))
        paths[label] = path
    return paths


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0, help="per target per round")
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="carrot-load-parts-"))
    store = pgvector_url()
    index_for_rag(store, tmp)
    fake = FakeUpstream()
    env = {"REDIS_URL": redis_url(), "PGVECTOR_URL": store, "PYTHONPATH": str(ROOT)}
    procs: dict[str, ProxyProcess] = {}
    try:
        procs["bare LiteLLM"] = ProxyProcess(fake.url, config=bare_config(tmp), env={"PYTHONPATH": str(ROOT)},
                                             wait=False)
        for label, path in variant_configs(tmp).items():
            procs[label] = ProxyProcess(fake.url, config=path, env=env, wait=False)
        for p in procs.values():
            p.wait_started()
        targets = {label: Target(p, gateway=label != "bare LiteLLM") for label, p in procs.items()}
        asyncio.run(run_rounds(targets, args.clients, args.seconds, args.rounds, 10**9))
    finally:
        for p in procs.values():
            p.stop()
        fake.close()
    rows = {label: t.row() for label, t in targets.items()}
    base, full = rows["bare LiteLLM"], rows[FULL]
    print(f"{args.rounds} rounds x {args.seconds:.0f} s per target, {args.clients} clients, interleaved, "
          f"{len(rows)} proxies running at once")
    print(f"{'':36} answered CPU ms/req  /bare  req/s  /bare  p95 ms  /bare  guardrail's CPU ms/req")
    for label, r in rows.items():
        cost = f"{full['cpu_ms'] - r['cpu_ms']:+.1f}" if label.startswith(("gateway without", NONE)) else ""
        print(f"{label:36} {r['answered']:8} {r['cpu_ms']:10.1f} {r['cpu_ms'] / base['cpu_ms']:5.2f}x "
              f"{r['rps']:6.1f} {r['rps'] / base['rps']:5.2f}x {r['p95']:7.0f} {r['p95'] / base['p95']:5.2f}x  {cost}")
    bad = {label: r["statuses"] for label, r in rows.items() if r["non200"] or r["lost"]}
    if bad:
        print(f"FAILED: answers other than 200 or lost requests: {bad}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
