"""Gateway overhead: fake upstream direct vs bare LiteLLM (same model list, no carrot hooks) vs the
gateway's core hooks (routing, prompt pack, cache key, metrics) vs the full gateway (plus guardrails).

Runs all four in one process on loopback with a ~2,000-token prompt (Python code from the standard
library, so it does not change with this project) and prints p50/p95 latency, requests/s and the
ratios. Requests are interleaved round-robin over the four targets, so a slow drift of the machine
hits every target alike, and the overhead is also given as the median of per-round differences.
Usage: .venv/bin/python bench/overhead.py [--requests 300]
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from carrot_hooks.serve import ROOT
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess

CODE = inspect.getsource(argparse)


def prompt_2k() -> str:
    from carrot_hooks.litellm_compat import count_tokens

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


def measure(targets: dict, n: int) -> dict[str, list[float]]:
    """Latencies per target, sending round-robin (the starting target rotates each round)."""
    names = list(targets)
    for name in names:
        for i in range(10):
            targets[name](f"warm-{i}")
    lat: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            targets[name](f"{name}-{i}")  # every prompt differs: no cache hits
            lat[name].append(time.perf_counter() - t)
    return lat


def row(name: str, lat: list[float]) -> dict:
    q = statistics.quantiles(lat, n=100)
    return {"name": name, "p50": q[49] * 1000, "p95": q[94] * 1000, "rps": len(lat) / sum(lat)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    prompt = prompt_2k()
    fake = FakeUpstream()
    tmp = Path(tempfile.mkdtemp(prefix="carrot-bench-"))
    bare = ProxyProcess(fake.url, config=bare_config(tmp))
    core = ProxyProcess(fake.url, config=bare_config(tmp, keep_callbacks=True))
    gw = ProxyProcess(fake.url)
    http = httpx.Client(timeout=60)
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
        lat = measure({"upstream direct": direct, "bare LiteLLM": via(bare, "ds-coder-v2"),
                       "core hooks": via(core, "gpt-4o"), "full gateway": via(gw, "gpt-4o")}, args.requests)
    finally:
        bare.stop()
        core.stop()
        gw.stop()
        fake.close()
    rows = [row(name, values) for name, values in lat.items()]
    base = rows[1]
    print(f"prompt ~2000 tokens, {args.requests} sequential requests per target, interleaved")
    print(f"{'':16} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8} {'p95 vs bare':>12}")
    for r in rows:
        print(f"{r['name']:16} {r['p50']:8.2f} {r['p95']:8.2f} {r['rps']:8.1f} {r['p95'] / base['p95']:11.2f}x")
    for r in rows[2:]:
        paired = statistics.median(a - b for a, b in zip(lat[r["name"]], lat["bare LiteLLM"])) * 1000
        print(f"{r['name']} over bare LiteLLM: p50 {r['p50'] - base['p50']:+.2f} ms, "
              f"p95 {r['p95'] - base['p95']:+.2f} ms, median per-round difference {paired:+.2f} ms "
              "(goal for our hooks: <= 5 ms at p95)")


if __name__ == "__main__":
    main()
