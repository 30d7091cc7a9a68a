"""Load: 16 concurrent clients for 60 s against bare LiteLLM and the full gateway, in one run.

Both proxies serve the same model list from the same loopback fake upstream; the gateway has every
hook on (auth, routing, prompt packs, RAG, guardrails, cache, metrics). The mix cycles task types,
chat and FIM, streaming and not; every prompt is unique (no cache hits) and carries PII; rag
requests retrieve from this project's own code and READMEs, indexed first.
Reports per target: requests, the histogram of HTTP statuses, lost (no response), p50/p95 latency,
requests/s, and the proxy's RSS before/after the run against a stated bound. Exit status 1 when a
check fails: any answer other than 200 (a 4xx too), a lost request, or RSS growth beyond the bound.

Usage: .venv/bin/python bench/load.py [--clients 16] [--duration 60] [--max-requests 200000]
                                      [--rounds 4] [--workers N] [--profile DIR]
The targets take turns: --rounds rounds (default 4) of duration/rounds seconds each, in alternating order, so
drift in the machine's speed during the run hits both alike; the gateway/bare req/s ratio is printed per round.
--workers runs both proxies with `--num_workers N`. --profile samples both proxies with py-spy during
their first round, threads holding the GIL only (the work that serialises a worker; collapsed stacks in
DIR/bare.txt, DIR/gateway.txt), and prints the GIL-held ms per request of each and the functions
whose share grew most from bare LiteLLM to the gateway.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm

import argparse
import asyncio
import itertools
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.overhead import bare_config
from carrot_hooks.serve import ROOT
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess, descendants
from tests.services import pgvector_url, redis_url

RSS_GROWTH_BOUND_MB = 200.0  # after warm-up; the proxy's caches are bounded, so growth beyond this is a leak
TASKS = ["editor", "refactor", "tests", "chat", "ci", "rag-code", "rag-doc"]
ALIAS = {"editor": "ds-coder-6.7b", "ci": "ds-coder-6.7b"}  # what the gateway routes each task to
CODE = (ROOT / "carrot_hooks" / "routing.py").read_text()[:1500]
RAG_REFS = {"rag-code": "bench-carrot-hooks@bench", "rag-doc": "bench-carrot-docs"}


def index_for_rag(store: str, tmp: Path) -> None:
    """Index this project's hooks (code) and READMEs (docs), so rag requests retrieve for real."""
    docs = tmp / "docs"
    docs.mkdir()
    for i, md in enumerate([ROOT / "README.md", *sorted((ROOT / "deploy").glob("*.md"))]):
        shutil.copy(md, docs / f"{i}-{md.name}")
    for args in (["code", str(ROOT / "carrot_hooks"), "--repo", "bench-carrot-hooks", "--ref", "bench"],
                 ["docs", str(docs), "--collection", "bench-carrot-docs"]):
        subprocess.run([sys.executable, "-m", "rag_indexer.cli", "--no-progress", *args], cwd=ROOT, check=True,
                       timeout=600, env={**os.environ, "PGVECTOR_URL": store}, stdout=subprocess.DEVNULL)


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (uvicorn workers, the search and PII processes)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) `pid` and its children have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def requests_mix():
    """Endless cycle of (kind, task, stream); kind is chat or fim."""
    chat = [("chat", t, s) for t in TASKS for s in (False, True)]
    fim = [("fim", "editor", False), ("fim", "editor", True)]
    return itertools.cycle(chat + fim)


def build(kind: str, task: str, stream: bool, gateway: bool) -> tuple[str, dict, dict]:
    """(path, json body, extra headers) for one request; each prompt is unique."""
    tag = uuid.uuid4().hex
    if kind == "fim":
        body = {"model": "gpt-4o" if gateway else "ds-coder-6.7b-fim", "prompt": f"# {tag}\ndef add(a, b):\n    ",
                "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 16, "stream": stream}
        return "/v1/completions", body, {}
    text = f"[{tag}] Please review this, and mail jane.doe.{tag[:6]}@example.com the result:\n{CODE}"
    model = "gpt-4o" if gateway else ALIAS.get(task, "ds-coder-v2")
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    refs = {"X-Context-Refs": RAG_REFS[task]} if task in RAG_REFS else {}
    return "/v1/chat/completions", body, ({"X-Task-Type": task, **refs} if gateway else {})


FAILURES: dict[tuple, str] = {}  # (target, kind, task, stream, status) -> first non-200 answer or lost request seen


async def one(http: httpx.AsyncClient, p: ProxyProcess, kind, task, stream, gateway) -> tuple[int, float]:
    path, body, headers = build(kind, task, stream, gateway)
    t = time.perf_counter()
    try:
        async with http.stream("POST", f"{p.base_url}{path}", json=body, headers={**p.headers(), **headers}) as r:
            data = await r.aread()
    except httpx.HTTPError as e:
        FAILURES.setdefault((p.port, kind, task, stream, "lost"), f"{type(e).__name__}: {e}")
        raise
    status = r.status_code
    if status == 200 and stream and (b'"error"' in data or not data.rstrip().endswith(b"[DONE]")):
        status = 599  # a stream that ended in an error event or without [DONE]
    if status != 200:
        FAILURES.setdefault((p.port, kind, task, stream, status), data[-300:].decode(errors="replace"))
    return status, time.perf_counter() - t


SAMPLE_HZ = 100


def py_spy() -> str:
    """The py-spy executable, or exit naming how to install it (before any indexing or proxy start)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("--profile needs py-spy: .venv/bin/python -m pip install py-spy (or uv pip install py-spy)")
    return spy


def start_profile(p: ProxyProcess, out: Path, duration: float) -> subprocess.Popen:
    """py-spy on the proxy and its workers for `duration` seconds, collapsed stacks into `out`."""
    return subprocess.Popen([py_spy(), "record", "--pid", str(p.proc.pid), "--subprocesses", "--rate", str(SAMPLE_HZ),
                             "--gil", "--full-filenames", "--format", "raw", "--duration", str(max(1, math.ceil(duration))), "--output", str(out),
                             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    """`function file.py` from py-spy's `function (path/file.py:line)`."""
    func, _, where = frame.partition(" (")
    return f"{func.split()[-1] if func else '?'} {where.rpartition('/')[2].split(':')[0]}"


# the gateway's child processes (search, PII analysis): their own GILs, reported apart
CHILD_PROCESSES = ("carrot_hooks.rag_search", "carrot_hooks.guardrails.pii_process")


def _samples(out: Path, requests: int):
    """(frames below the process frames, ms per request, whether in a child process) per py-spy stack."""
    for line in out.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():  # a frame name py-spy could not keep on one line
            continue
        frames = stack.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        yield frames[len(procs):], int(n) * 1000 / SAMPLE_HZ / requests, any(c in f for c in CHILD_PROCESSES for f in procs)


def profile_ms(out: Path, requests: int) -> Counter:
    """GIL-held ms per request each function is on the stack for (inclusive); key "" is the proxy's total,
    "child processes" what the search and PII processes held of their own GILs (not the proxy's)."""
    ms = Counter()
    for frames, cost, child in _samples(out, requests):
        if child:
            ms["child processes"] += cost
            continue
        ms[""] += cost
        for frame in {_frame_name(f) for f in frames}:
            ms[frame] += cost
    return ms


_OURS = tuple(f"/{d.name}/" for d in (ROOT / "carrot_hooks", ROOT / "rag_indexer", ROOT / "carrot_common"))
# around every request or hook: never the owner of what runs inside them
_WRAPPERS = ("/carrot_hooks/http_edge.py:", "timed_stage")


def _where(frame: str) -> tuple[str, str]:
    """(function, path) of a py-spy frame `function (path:line)`."""
    func, _, where = frame.partition(" (")
    return (func.split()[-1] if func else "?"), where.rpartition(":")[0]


def _module(path: str) -> str:
    """`litellm caching/redis_cache.py` for LiteLLM, the package for other libraries, `stdlib x` for the standard library."""
    if "/site-packages/" in path:
        parts = path.split("/site-packages/")[-1].split("/")
        return "litellm " + "/".join(parts[1:]) if parts[0] == "litellm" else parts[0]
    if "/lib/python3" in path:
        return "stdlib " + path.split("/lib/python3")[-1].partition("/")[2].split("/")[0].removesuffix(".py")
    return path.rpartition("/")[2] or "?"


def _owner(frames: list[str]) -> str:
    """Who a sample is charged to. Innermost LiteLLM frame below all of our frames (e.g. the upstream stream our
    output filter iterates): `litellm <module>`, plus the library it was in (`> redis`). Else the outermost of our
    frames below every LiteLLM frame (the hook LiteLLM called: `ours: module.function`). Else the leaf's package."""
    where = [_where(f) for f in frames]
    ours = [i for i, (func, path) in enumerate(where)
            if any(o in path for o in _OURS) and not any(w in f"{path}:{func}" for w in _WRAPPERS)]
    theirs = [i for i, (_, path) in enumerate(where) if "/site-packages/litellm/" in path]
    if theirs and (not ours or theirs[-1] > ours[-1]):
        owner, leaf = _module(where[theirs[-1]][1]), _module(where[-1][1])
        return owner if leaf.startswith("litellm ") else f"{owner} > {leaf}"
    if ours:
        func, path = where[min(i for i in ours if not theirs or i > theirs[-1])]
        return f"ours: {path.rpartition('/')[2].removesuffix('.py')}.{func}"
    return _module(where[-1][1]) if where else "?"


def profile_owners(out: Path, requests: int) -> Counter:
    """GIL-held ms per request charged to each owner (`_owner`), exclusive: they sum to the total."""
    ms = Counter()
    for frames, cost, child in _samples(out, requests):
        if not child:
            ms[_owner(frames)] += cost
    return ms


def print_profile(bare: Counter, gateway: Counter, owners: tuple[Counter, Counter], top: int = 25) -> None:
    print(f"profile: GIL-held ms per request, bare {bare['']:.1f}, gateway {gateway['']:.1f} (its search and PII "
          f"processes, on their own GILs: {gateway['child processes']:.1f}); functions whose share grew most (inclusive):")
    grown = {f: gateway[f] - bare[f] for f in gateway if f and f != "child processes"}
    for frame, d in sorted(grown.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {d:+6.2f} ms  (bare {bare[frame]:5.2f}, gateway {gateway[frame]:5.2f})  {frame}")
    base, gw = owners
    ours = sum(v for k, v in gw.items() if k.startswith("ours: "))
    print("by owner (each sample charged once: to the innermost LiteLLM module when it runs below all of our "
          "frames, `> library` if it was in another library; else to the outermost of our frames below every "
          f"LiteLLM frame; else to the leaf's package); our frames {ours:.2f} ms; largest growth:")
    for owner, d in sorted(((o, gw[o] - base[o]) for o in gw | base), key=lambda kv: -kv[1])[:top]:
        print(f"  {d:+6.2f} ms  (bare {base[owner]:5.2f}, gateway {gw[owner]:5.2f})  {owner}")


class Target:
    """One proxy under load: its measured requests summed over the rounds it ran."""

    def __init__(self, p: ProxyProcess, gateway: bool):
        self.p, self.gateway, self.mix = p, gateway, requests_mix()
        self.statuses: Counter[int] = Counter()
        self.lat: list[float] = []
        self.by_task: dict[str, list[float]] = {}
        self.lost = self.sent = 0
        self.wall = self.cpu = 0.0
        self.round_rps: list[float] = []
        self.rss_before = self.rss_after = 0.0
        self.profiled = 0

    async def warm(self, http: httpx.AsyncClient, clients: int) -> None:
        """Not counted: 8 requests per client at full concurrency (each kind of request 8 times over), so every
        worker of `--workers N` has loaded its RAG model first."""
        async def one_client() -> None:
            for _ in range(8):
                try:
                    await one(http, self.p, *next(self.mix), self.gateway)
                except httpx.HTTPError:
                    self.lost += 1  # counted (and the run fails) but the warm-up goes on

        await asyncio.gather(*(one_client() for _ in range(clients)))
        self.rss_before = rss_mb(self.p.proc.pid)

    async def round(self, http: httpx.AsyncClient, clients: int, seconds: float, cap: int,
                    profile: Path | None = None) -> None:
        """`clients` clients for `seconds` (at most `cap` requests in all), added to the totals."""
        stop_at, answered, cpu_before = time.perf_counter() + seconds, len(self.lat), cpu_s(self.p.proc.pid)
        cap += self.sent  # `cap` more requests in this round

        async def client() -> None:
            while time.perf_counter() < stop_at and self.sent < cap:
                self.sent += 1
                kind, task, stream = next(self.mix)
                try:
                    status, took = await one(http, self.p, kind, task, stream, self.gateway)
                except httpx.HTTPError:
                    self.lost += 1
                    continue
                self.statuses[status] += 1
                self.lat.append(took)
                self.by_task.setdefault("fim" if kind == "fim" else task, []).append(took)

        spy = start_profile(self.p, profile, seconds) if profile else None
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
        if spy and spy.wait(timeout=120):
            raise RuntimeError(f"py-spy failed: {spy.stderr.read().decode()[-500:]}")
        self.wall += wall
        self.cpu += cpu_s(self.p.proc.pid) - cpu_before
        self.round_rps.append((len(self.lat) - answered) / wall)
        if profile:
            self.profiled = len(self.lat) - answered  # the requests py-spy's samples cover
        self.rss_after = rss_mb(self.p.proc.pid)

    @property
    def cpu_ms(self) -> float:
        """The proxy's CPU ms per answered request so far."""
        return self.cpu * 1000 / max(1, len(self.lat))

    def row(self) -> dict:
        q = statistics.quantiles(self.lat, n=100) if len(self.lat) >= 2 else [float("nan")] * 99
        return {"sent": self.sent, "answered": sum(self.statuses.values()), "lost": self.lost,
                "statuses": dict(self.statuses), "non200": sum(n for s, n in self.statuses.items() if s != 200),
                "p50": q[49] * 1000, "p95": q[94] * 1000, "rps": len(self.lat) / self.wall,
                "rss_before": self.rss_before, "rss_after": self.rss_after,
                "cpu_ms": self.cpu_ms,
                "p50_by_task": {t: statistics.median(v) * 1000 for t, v in sorted(self.by_task.items())}}


async def run_rounds(targets: dict[str, Target], clients: int, seconds: float, rounds: int, cap: int,
                     profile: dict[str, Path] | None = None, after_round=None) -> None:
    """Warm every target, then `rounds` rounds of `seconds` per target, the targets taking turns (one at a
    time, the starting one rotating every round), so a machine that slows down during the run slows all
    alike. py-spy samples each target in `profile` during its first round; `after_round(i)` runs after each."""
    # idle connections dropped before uvicorn's 5 s keep-alive ends: else one reused as the server closes it is lost
    limits = httpx.Limits(max_connections=clients * 2, keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        for t in targets.values():
            await t.warm(http, clients)
        names = list(targets)
        for i in range(rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:
                spy_to = (profile or {}).get(name) if i == 0 else None
                await targets[name].round(http, clients, seconds, max(1, cap // rounds), spy_to)
            if after_round:
                after_round(i)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per target, over all rounds")
    ap.add_argument("--rounds", type=int, default=4, help="turns each target takes, alternating")
    ap.add_argument("--max-requests", type=int, default=200_000, help="per target, a hard cap")
    ap.add_argument("--workers", type=int, default=1, help="LiteLLM --num_workers for both proxies")
    ap.add_argument("--profile", type=Path, help="folder for py-spy's collapsed stacks of both runs")
    args = ap.parse_args()
    if args.profile:
        py_spy()
    tmp = Path(tempfile.mkdtemp(prefix="carrot-load-"))
    store = pgvector_url()
    index_for_rag(store, tmp)  # before the fake upstream and the proxies start: a failed index leaves none running
    fake = FakeUpstream()
    bare = ProxyProcess(fake.url, config=bare_config(tmp), env={"PYTHONPATH": str(ROOT)}, workers=args.workers)
    try:
        gw = ProxyProcess(fake.url, env={"REDIS_URL": redis_url(), "PGVECTOR_URL": store}, workers=args.workers)
    except BaseException:
        bare.stop()
        fake.close()
        raise
    targets = {"bare LiteLLM": Target(bare, gateway=False), "carrot gateway": Target(gw, gateway=True)}
    try:
        out = {name: args.profile / f"{'bare' if name.startswith('bare') else 'gateway'}.txt" for name in targets} \
            if args.profile else {}
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        asyncio.run(run_rounds(targets, args.clients, args.duration / args.rounds, args.rounds, args.max_requests, out))
    finally:
        bare.stop()
        gw.stop()
        fake.close()
    rows = {name: t.row() for name, t in targets.items()}
    base = rows["bare LiteLLM"]
    print(f"{args.clients} clients x {args.duration:.0f} s per target in {args.rounds} alternating rounds, "
          f"{args.workers} worker(s) each; mix: {len(TASKS)} task types chat + FIM, streaming and not, unique prompts")
    pairs = list(zip(targets["carrot gateway"].round_rps, targets["bare LiteLLM"].round_rps))
    print("req/s per round, gateway/bare: " + ", ".join(f"{g:.1f}/{b:.1f} = {g / b:.2f}x" for g, b in pairs)
          + f"; median {statistics.median(g / b for g, b in pairs):.2f}x")
    print(f"{'':15} {'sent':>6} {'answered':>8} {'lost':>5} {'non200':>6} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7} "
          f"{'p95/bare':>8} {'rps/bare':>8} {'CPU ms/req':>10} {'RSS MB before→after':>20}")
    ok = True
    for name, r in rows.items():
        print(f"{name:15} {r['sent']:6} {r['answered']:8} {r['lost']:5} {r['non200']:6} {r['p50']:8.1f} {r['p95']:8.1f} "
              f"{r['rps']:7.1f} {r['p95'] / base['p95']:7.2f}x {r['rps'] / base['rps']:7.2f}x "
              f"{r['cpu_ms']:10.1f} {r['rss_before']:9.0f}→{r['rss_after']:.0f}")
        print(f"  statuses {name}: " + ", ".join(f"{s} x{n}" for s, n in sorted(r["statuses"].items())))
        if r["non200"] or r["lost"] or r["answered"] != r["sent"]:
            ok = False
            print(f"  FAIL {name}: {r['non200']} answers other than 200, {r['lost']} lost")
    growth = rows["carrot gateway"]["rss_after"] - rows["carrot gateway"]["rss_before"]
    for name, r in rows.items():
        print(f"p50 ms by task, {name}: " + ", ".join(f"{t} {ms:.0f}" for t, ms in r["p50_by_task"].items()))
    for key, text in FAILURES.items():
        print(f"  non-200 sample {key}: {text}")
    for name, t in targets.items():
        if t.lost:
            errors = [ln for ln in t.p.log().splitlines() if "Error" in ln or "Exception" in ln]
            print(f"  {name} (port {t.p.port}) log, error lines ({len(errors)}), last 20:\n    " + "\n    ".join(errors[-20:]))
    print(f"gateway RSS growth {growth:+.0f} MB (bound {RSS_GROWTH_BOUND_MB:.0f} MB)")
    ok = ok and growth <= RSS_GROWTH_BOUND_MB
    if args.profile:
        n = {name: targets[name].profiled for name in targets}
        bare_ms, gw_ms = (profile_ms(out[name], n[name]) for name in targets)
        owners = tuple(profile_owners(out[name], n[name]) for name in targets)
        print_profile(bare_ms, gw_ms, owners)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
