"""Gateway overhead: fake upstream direct vs bare LiteLLM (same model list, no carrot hooks) vs the
gateway's core hooks (routing, prompt pack, cache key, metrics) vs the full gateway (plus guardrails).

Runs all four in one process on loopback with a ~2,000-token prompt and prints p50/p95 latency,
requests/s and the ratios. Usage: .venv/bin/python bench/overhead.py [--requests 300] [--concurrency 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from carrot_hooks.serve import ROOT
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess

CODE = (ROOT / "carrot_hooks" / "gateway.py").read_text()


def prompt_2k() -> str:
    from carrot_hooks.tokens import count_tokens

    text = ""
    while count_tokens(text) < 2000:
        text += CODE
    return text[: int(len(text) * 2000 / count_tokens(text))]


def bare_config(tmp: Path, keep_callbacks: bool = False) -> Path:
    """Our model list and LiteLLM settings (its own prometheus callback included) without guardrails
    and, unless kept, without carrot callbacks and custom auth: what our code adds is the difference."""
    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    cfg.pop("guardrails", None)
    if not keep_callbacks:
        settings = cfg["litellm_settings"]
        settings["callbacks"] = [c for c in settings.get("callbacks", []) if not c.startswith("carrot_hooks")]
        cfg["general_settings"].pop("custom_auth", None)
    path = tmp / ("core_config.yaml" if keep_callbacks else "bare_config.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


def measure(name: str, send, n: int, concurrency: int) -> dict:
    for i in range(10):
        send(f"warm-{i}")
    lat: list[float] = []

    def one(i):
        t = time.perf_counter()
        send(f"{name}-{i}")  # every prompt differs: no cache hits
        lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100)
    return {"name": name, "p50": q[49] * 1000, "p95": q[94] * 1000, "rps": n / wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()
    prompt = prompt_2k()
    fake = FakeUpstream()
    tmp = Path(tempfile.mkdtemp(prefix="carrot-bench-"))
    bare = ProxyProcess(fake.url, config=bare_config(tmp))
    core = ProxyProcess(fake.url, config=bare_config(tmp, keep_callbacks=True))
    gw = ProxyProcess(fake.url)
    http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=args.concurrency * 2))
    def msgs(tag: str) -> list[dict]:
        return [{"role": "user", "content": f"{tag}\n{prompt}"}]

    def direct(tag: str):
        http.post(f"{fake.url}/api/chat", json={"model": "deepseek-coder-v2:16b-lite-instruct-q4_K_M",
                                                 "messages": msgs(tag), "stream": False}).raise_for_status()

    def via(p: ProxyProcess, model: str):
        def send(tag: str):
            r = http.post(f"{p.base_url}/v1/chat/completions", headers=p.headers(),
                          json={"model": model, "messages": msgs(tag), "max_tokens": 16})
            r.raise_for_status()
        return send

    try:
        rows = [measure("upstream direct", direct, args.requests, args.concurrency),
                measure("bare LiteLLM", via(bare, "ds-coder-v2"), args.requests, args.concurrency),
                measure("core hooks", via(core, "gpt-4o"), args.requests, args.concurrency),
                measure("full gateway", via(gw, "gpt-4o"), args.requests, args.concurrency)]
    finally:
        bare.stop()
        core.stop()
        gw.stop()
        fake.close()
    base = rows[1]
    print(f"prompt ~2000 tokens, {args.requests} requests, concurrency {args.concurrency}")
    print(f"{'':16} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8} {'p95 vs bare':>12}")
    for r in rows:
        print(f"{r['name']:16} {r['p50']:8.2f} {r['p95']:8.2f} {r['rps']:8.1f} {r['p95'] / base['p95']:11.2f}x")
    for r in rows[2:]:
        print(f"{r['name']} over bare LiteLLM: p50 {r['p50'] - base['p50']:+.2f} ms, "
              f"p95 {r['p95'] - base['p95']:+.2f} ms (goal for our hooks: <= 5 ms at p95)")


if __name__ == "__main__":
    main()
