"""Send each case to each target through the gateway and score the answers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx

from . import scoring, suite
from .report import Report, Result

_PACK = re.compile(r"^[a-z0-9_]+@v[0-9]+$")  # a prompt-pack version, as in policy/routing.yaml
PACK_HEADER = "X-Carrot-Prompt-Pack"


@dataclass(frozen=True)
class Target:
    """What a run evaluates: a model (pinned alias, alias or virtual model) and/or a prompt-pack version."""

    name: str
    model: str | None = None
    pack: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Target:
        """`ds-coder-v2@2025-11-30`, `carrot-chat`, `chat@v2` (a pack) or `ds-coder-v2@2025-11-30+chat@v2`."""
        model = pack = None
        for part in filter(None, spec.split("+")):
            if _PACK.match(part):
                pack = part
            else:
                model = part
        if model is None and pack is None:
            raise ValueError(f"empty target {spec!r}")
        return cls(spec, model, pack)

    def headers(self, task: str) -> dict[str, str]:
        h = {"X-Task-Type": task}
        if self.model and "@" in self.model:
            h["X-Model-Alias"] = self.model  # a pin: explicit, so no canary or rule re-routes it
        if self.pack:
            h[PACK_HEADER] = self.pack
        return h

    @property
    def model_field(self) -> str:
        return self.model or "auto"


def _request(http: httpx.Client, target: Target, case) -> tuple[str, dict]:
    """POST the case; returns (answer text, response headers)."""
    headers = target.headers(case.task)
    if isinstance(case, suite.FimCase):
        body = {"model": target.model_field, "prompt": case.prefix, "suffix": case.suffix,
                "max_tokens": case.max_tokens, "temperature": 0}
        r = http.post("/v1/completions", json=body, headers=headers)
    else:
        if isinstance(case, suite.CodeCase):
            content = f"{case.instruction}\n\n```python\n{case.prompt}```"
        else:
            headers["X-Context-Refs"] = case.refs
            content = f"{case.question}\nCite the file path your answer comes from."
        body = {"model": target.model_field, "messages": [{"role": "user", "content": content}],
                "max_tokens": case.max_tokens, "temperature": 0}
        r = http.post("/v1/chat/completions", json=body, headers=headers)
    if r.status_code != 200:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        raise _HTTPFailure(r.status_code, str(message)[:300], dict(r.headers))
    data = r.json()
    choice = data["choices"][0]
    text = choice.get("text") if "text" in choice else (choice.get("message") or {}).get("content")
    usage = data.get("usage") or {}
    return text or "", {**dict(r.headers), "_tokens_in": usage.get("prompt_tokens") or 0,
                        "_tokens_out": usage.get("completion_tokens") or 0}


class _HTTPFailure(Exception):
    def __init__(self, status: int, message: str, headers: dict):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def run_case(http: httpx.Client, target: Target, case, sandbox_timeout: float) -> Result:
    t0 = time.perf_counter()
    base = {"target": target.name, "case": case.id, "task": case.task, "kind": case.kind}
    try:
        text, h = _request(http, target, case)
    except _HTTPFailure as e:
        return Result(**base, passed=False, reason=f"HTTP {e.status}: {e.message}", latency=time.perf_counter() - t0,
                      guardrails=e.headers.get("x-carrot-guardrails", "none"), status=e.status)
    except httpx.HTTPError as e:
        return Result(**base, passed=False, reason=f"{type(e).__name__}: {e}"[:300], latency=time.perf_counter() - t0,
                      status=0)
    latency = time.perf_counter() - t0
    if isinstance(case, suite.FimCase):
        passed, reason = scoring.score_fim(case, text)
    elif isinstance(case, suite.CodeCase):
        passed, reason = scoring.score_code(case, text, sandbox_timeout)
    else:
        sources = [unquote(s) for s in h.get("x-carrot-rag-sources", "").split(",") if s]
        passed, reason = scoring.score_rag(case, text, h.get("x-carrot-rag", ""), sources)
    return Result(**base, passed=passed, reason=reason, latency=latency, tokens_in=h["_tokens_in"],
                  tokens_out=h["_tokens_out"], guardrails=h.get("x-carrot-guardrails", "none"),
                  model=h.get("x-carrot-model", ""), arm=h.get("x-carrot-arm", ""), status=200)


def evaluate(url: str, key: str, targets: list[str | Target], suites: list[str | Path], *,
             baseline: str | Target | None = None, tasks: set[str] | None = None, limit: int | None = None,
             concurrency: int = 4, timeout: float = 120.0, sandbox_timeout: float = 10.0,
             progress: Callable[[int, int], None] | None = None) -> Report:
    """Run every case against the baseline (first) and each target; `progress(done, total)` after each case."""
    cases = suite.load([Path(s) for s in suites], tasks, limit)
    parsed = [t if isinstance(t, Target) else Target.parse(t) for t in targets]
    base = None if baseline is None else baseline if isinstance(baseline, Target) else Target.parse(baseline)
    runs = ([base] if base else []) + [t for t in parsed if t != base]
    jobs = [(t, c) for t in runs for c in cases]
    headers = {"Authorization": f"Bearer {key}"}
    done = iter(range(1, len(jobs) + 1))  # next() is atomic under the GIL: a thread-safe counter
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as http, \
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        def one(job):
            result = run_case(http, *job, sandbox_timeout)
            if progress:
                progress(next(done), len(jobs))
            return result
        results = list(pool.map(one, jobs))
    return Report(targets=[t.name for t in runs], baseline=base.name if base else None, results=results)
