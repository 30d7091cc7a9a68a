"""Guardrail quality and speed: precision/recall on the shared dev sets, false positives per MB of
real code, pre/post-filter latency at 200 B / 4 KB / 32 KB, and the first-token delay of the
streaming holdback (against a pass-through stream run in the same process).

PII is also scored on our own template sentences (`pii_templates.py`, a tuned and a held-out
group) and on whole source files of PyPI sdists pasted as code (a tuned and a held-out set of
projects, `SDISTS`; downloaded once with pip into `--sdists`): replaced spans per 100 KB and
altered code tokens.

    .venv/bin/python bench/guardrails.py [--evaldata ../shared/evaldata] [--code-mb 8] [--pii-only]
        [--baseline REF] [--code-pii-only [GROUP ...]] [--docs-names [GROUP ...]] [--stream-only]

`--baseline REF` also times the 4 KB all-prose pre-filter of the PII stage as it was at git REF
(`carrot_hooks/guardrails/pii/` of REF beside this tree's, same policy), interleaved run by run with this
tree's, and prints CPU and wall p50/p95 of both and their ratios (CPU time is what a loaded machine
distorts least).

`--stream-only` streams 60 real source files (4 KB each, installed packages) through the holdback filter in
4- and 16-character chunks (a token is about 4 characters) and prints the CPU per 4 KB answer; with
`--baseline REF` also REF's `carrot_hooks/guardrails/stream.py`, interleaved, the ratio, and whether both
released the same text.

Data is read from the evaluation folder (never copied into the repo); every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import importlib.util
import inspect
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tokenize
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network

import pii_templates

from bench import hostile, secret_heldout, secrets_quality
from carrot_hooks.config import load_model
from carrot_hooks.guardrails.allowlist import allowed_tasks
from carrot_hooks.guardrails.output import OutputScanner
from carrot_hooks.guardrails.pii import PiiRedactor, Vault
from carrot_hooks.guardrails.policy import PolicyScanner
from carrot_hooks.guardrails.settings import GuardrailPolicy, PiiSettings
from carrot_hooks.guardrails.stream import StreamFilter

IN_SCOPE = {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS",
            "STREET_ADDRESS"}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prf(tp: int, fp: int, fn: int) -> str:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return f"P={p:.3f} R={r:.3f} F1={f:.3f} (tp={tp} fp={fp} fn={fn})"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def bench_pii(redactor: PiiRedactor, rows: list[dict], label: str) -> None:
    """Span-overlap P/R per entity type over the types the policy redacts."""
    per: dict[str, Counter] = {}
    for row in rows:
        gold = [s for s in row["spans"]]
        pred = redactor.analyze(row["text"])
        for g in gold:
            if g["entity_type"] not in IN_SCOPE:
                continue
            hit = any(p.entity == g["entity_type"] and p.start < g["end"] and g["start"] < p.end for p in pred)
            per.setdefault(g["entity_type"], Counter())["tp" if hit else "fn"] += 1
        for p in pred:
            ok = any(p.entity == g["entity_type"] and p.start < g["end"] and g["start"] < p.end for g in gold)
            if not ok:
                per.setdefault(p.entity, Counter())["fp"] += 1
    total = sum(per.values(), Counter())
    print(f"  PII [{label}] micro {prf(total['tp'], total['fp'], total['fn'])}")
    for entity, c in sorted(per.items()):
        print(f"    {entity:15s} {prf(c['tp'], c['fp'], c['fn'])}")


def joined(rows: list[dict], n: int) -> list[dict]:
    """`rows` joined with a space, `n` at a time, their spans shifted: long prose, where NER's candidate
    windows sit side by side in one text as in the latency benchmark."""
    out = []
    for i in range(0, len(rows), n):
        text, spans = "", []
        for row in rows[i : i + n]:
            text += " " if text else ""
            spans += [{**g, "start": g["start"] + len(text), "end": g["end"] + len(text)} for g in row["spans"]]
            text += row["text"]
        out.append({"text": text, "spans": spans})
    return out


COMMAND_SETS = (  # (label, file, class field): our own per-class sets, then the shared dev set
    ("tuned", ROOT / "bench" / "data" / "commands_by_class.jsonl", "class"),
    ("tuned (held-out until its first run: 140/143)", ROOT / "bench" / "data" / "commands_by_class_markdown.jsonl", "class"),
    ("tuned (held-out until the session that wrote heldout2: 68/75)", ROOT / "bench" / "data" / "commands_by_class_heldout.jsonl",
     "class"),
    ("tuned (held-out until its first run: 134/139, 0 FP in 70 harmless)", ROOT / "bench" / "data" / "commands_by_class_heldout2.jsonl",
     "class"),
    ("tuned (held-out until its first run: 84/104, 1 FP in 45 harmless)", ROOT / "bench" / "data" / "commands_by_class_heldout3.jsonl",
     "class"),
    ("tuned (held-out until its first run: 90/104, 1 FP in 50 harmless)", ROOT / "bench" / "data" / "commands_by_class_heldout4.jsonl",
     "class"),
    ("tuned (held-out until its first run: 166/183, 0 FP in 69 harmless)", ROOT / "bench" / "data" / "commands_by_class_heldout5.jsonl",
     "class"),
    ("held-out (written and committed before its first run)", ROOT / "bench" / "data" / "commands_by_class_heldout6.jsonl",
     "class"),
    ("external, families of its misses looked at", None, "category"),
)


def bench_commands(scan, evaldata: Path) -> None:
    """Recall per technique class and false positives on the harmless rows, per data set."""
    for label, path, key in COMMAND_SETS:
        path = path or evaldata / "commands_dev.jsonl"
        found, total, fp, harmless = Counter(), Counter(), 0, 0
        for row in jsonl(path):
            hit = bool(scan(row["command"]))
            if row["label"] == "harmful":
                total[row[key]] += 1
                found[row[key]] += hit
            else:
                harmless += 1
                fp += hit
        n = sum(total.values())
        print(f"  commands [{label}] {path.name}: recall {sum(found.values())}/{n} = {sum(found.values()) / n:.3f}, "
              f"false positives {fp}/{harmless} harmless")
        print("    " + ", ".join(f"{c} {found[c]}/{t}" for c, t in sorted(total.items())))


def code_corpus(max_mb: float) -> tuple[str, list[str]]:
    """Production sources (tests excluded) of installed packages and the stdlib, up to `max_mb`."""
    site = Path(sysconfig.get_paths()["purelib"])
    roots = [site / p for p in ("pydantic", "httpx", "starlette", "fastapi", "yaml", "rich", "presidio_analyzer",
                                "spacy", "openai", "aiohttp", "redis", "jinja2")]
    roots.append(Path(sysconfig.get_paths()["stdlib"]))
    parts, names, size = [], [], 0
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            if "test" in f.as_posix().lower() or size > max_mb * 1e6:
                continue
            text = f.read_text(errors="replace")
            parts.append(text)
            names.append(root.name)
            size += len(text.encode())
    return "\n".join(parts), sorted(set(names))


SDISTS = {  # PyPI source releases fed to the PII stage as pasted code
    "tune": ["requests==2.32.3", "flask==3.1.0", "rich==13.9.4", "click==8.1.8", "jinja2==3.1.5"],
    "held-out": ["django==5.1.4", "paramiko==3.5.0", "tornado==6.4.2", "werkzeug==3.1.3", "pygments==2.18.0",
                 "docutils==0.21.2", "urllib3==2.3.0"],
    # added with the code-email attribution rule and measured only after it was written; never looked at
    "fresh": ["twisted==24.11.0", "networkx==3.4.2", "scrapy==2.12.0", "mypy==1.13.0", "sympy==1.13.3",
              "boltons==24.1.0", "attrs==24.2.0"],
    # added with the card-as-data, trailing-comment and bracket-continuation rules (written while looking
    # at `fresh`'s altered tokens, which makes `fresh` tuned); measured only after they were written
    "fresh-2": ["sqlalchemy==2.0.36", "pylint==3.3.2", "setuptools==75.6.0", "aiohttp==3.11.10", "black==24.10.0",
                "httpx==0.28.1", "pydantic==2.10.3", "sphinx==8.1.3"],
}


def sdist_sources(group: str, cache: Path, docs: bool = False) -> dict[str, str]:
    """Production `.py` files (no tests/docs) of the group's sdists, downloaded once into `cache` with pip;
    `docs`: their documentation instead (`.rst`, `.txt`, `.md` files)."""
    folder = cache / group
    folder.mkdir(parents=True, exist_ok=True)
    specs = SDISTS[group]
    have = {p.name.lower() for p in folder.glob("*.tar.gz")}
    missing = [s for s in specs if f"{s.replace('==', '-')}.tar.gz" not in have]
    if missing:
        names = ",".join(s.split("==")[0] for s in missing)  # sdists of these; their build tools as wheels
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", names,
                        "-d", str(folder), *missing], check=True)
    files = {}
    for archive in sorted(folder.glob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                parts = m.name.lower().split("/")
                wanted = m.name.endswith((".rst", ".txt", ".md")) if docs else m.name.endswith(".py") and not any(
                    p in ("tests", "test", "testing", "docs", "doc", "examples") for p in parts[1:-1])
                if m.isfile() and wanted:
                    files[m.name] = tar.extractfile(m).read().decode("utf-8", errors="replace")
    return files


def code_token_spans(source: str) -> list[tuple[int, int]]:
    """Offsets of Python's NAME/NUMBER/OP tokens (code outside literals and comments)."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.NAME, tokenize.NUMBER, tokenize.OP):
                spans.append((starts[tok.start[0] - 1] + tok.start[1], starts[tok.end[0] - 1] + tok.end[1]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return spans


def bench_code_pii(redactor: PiiRedactor, group: str, cache: Path) -> None:
    """Whole source files pasted unfenced and in a ```python fence: replaced spans and altered code tokens."""
    files = sdist_sources(group, cache)
    kb = sum(len(t.encode()) for t in files.values()) / 1000
    projects = sorted({name.split("/")[0] for name in files})
    for fenced in (False, True):
        spans, altered, entities, t = 0, 0, Counter(), time.perf_counter()
        for source in files.values():
            head = "```python\n" if fenced else ""
            text = f"{head}{source}\n```" if fenced else source
            hits = redactor.analyze(text)
            tokens = code_token_spans(source)
            for h in hits:
                s, e = h.start - len(head), h.end - len(head)
                entities[h.entity] += 1
                altered += any(a < e and s < b for a, b in tokens)
            spans += len(hits)
        print(f"  PII on code [{group}] {'fenced' if fenced else 'unfenced'}: {kb / 1000:.2f} MB, {len(files)} files "
              f"({', '.join(projects)}): {spans / kb * 100:.2f} replaced spans per 100 KB {dict(entities)}, "
              f"{altered} altered code tokens ({time.perf_counter() - t:.0f} s)")


def bench_docs_names(redactors: dict[str, PiiRedactor], group: str, cache: Path) -> None:
    """PERSON spans per MB in the group's documentation, sent as 4 KB prompts (cut at blank lines), and the
    values each redactor finds that the other does not (names in changelogs and credits are real ones)."""
    files = sdist_sources(group, cache, docs=True)
    pieces = [p for text in files.values() for p in _paragraph_pieces(text, 4096)]
    mb = sum(len(p.encode()) for p in pieces) / 1e6
    found = {label: Counter(p[h.start:h.end] for p in pieces for h in r.analyze(p) if h.entity == "PERSON")
             for label, r in redactors.items()}
    for label, values in found.items():
        only = sum((values - other for o, other in found.items() if o != label), Counter())
        print(f"  PERSON in docs [{group}] {label}: {mb:.2f} MB, {sum(values.values()) / mb:.1f} spans per MB; "
              f"only here ({sum(only.values())}): {only.most_common(40)}")


def _paragraph_pieces(text: str, size: int) -> list[str]:
    """`text` in pieces of at most about `size` characters, cut at blank lines."""
    pieces, current = [], ""
    for para in text.split("\n\n"):
        if current and len(current) + len(para) > size:
            pieces.append(current)
            current = ""
        current += para + "\n\n"
    return [*pieces, current] if current.strip() else pieces


def timed(fn, arg, runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock ms per run; with `cpu`, also this thread's CPU ms per run (less sensitive to other load)."""
    out = []
    for _ in range(runs):
        t, c = time.perf_counter(), time.thread_time()
        fn(arg)
        out.append((time.perf_counter() - t) * 1000)
        if cpu is not None:
            cpu.append((time.thread_time() - c) * 1000)
    return out


def reference_ms() -> float:
    """Median time of a fixed pure-Python loop: the same-process baseline for machine speed."""
    def loop() -> None:
        x = 0
        for i in range(1_000_000):
            x += i
    return statistics.median(timed(lambda _: loop(), None, 5))


def sized(text: str, n: int) -> str:
    return (text * (n // max(1, len(text)) + 1))[:n]


async def first_token_delays(policy: GuardrailPolicy, answers: list[str], gap_s: float, chunk_chars: int) -> tuple[list[float], list[float]]:
    """Delay between the first upstream content chunk and the first content the client gets."""
    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

    from carrot_hooks.guardrails.output_guardrail import OutputGuardrail

    guard = OutputGuardrail(guardrail_name="bench", event_hook="post_call", default_on=True)

    async def upstream(text: str, stamps: list[float]):
        pieces = [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)]
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(gap_s)
            stamps.append(time.perf_counter())
            yield ModelResponseStream(id="b", model="m", choices=[StreamingChoices(index=0, delta=Delta(content=piece))])
        yield ModelResponseStream(id="b", model="m", choices=[StreamingChoices(index=0, delta=Delta(), finish_reason="stop")])

    async def passthrough(gen):
        async for c in gen:
            yield c

    async def measure(wrap) -> list[float]:
        delays = []
        for text in answers:
            stamps: list[float] = []
            async for chunk in wrap(upstream(text, stamps)):
                if chunk.choices and chunk.choices[0].delta.content:
                    delays.append((time.perf_counter() - stamps[0]) * 1000)
                    break
        return delays

    base = await measure(passthrough)
    guarded = await measure(lambda g: guard.async_post_call_streaming_iterator_hook(None, g, {}))
    return base, guarded


def bench_prefilter(policy: GuardrailPolicy, prompt_policy: PolicyScanner, redactor: PiiRedactor, prose: str,
                    snippet: str, runs: int, ref: float) -> None:
    """Pre-filter latency (policy regex + task allowlist + PII) on coding prompts and on all-prose text."""
    question = prose[:400]
    counter = iter(range(10**9))

    def policy_only(text: str) -> None:
        prompt_policy.scan(f"{text} #{next(counter)}")

    def pre(text: str) -> None:
        text = f"{text} #{next(counter)}"
        prompt_policy.scan(text)
        allowed_tasks(policy.task_allowlist, "bench", None, None)
        redactor.redact(text, Vault())

    def coding(n: int) -> str:
        return (question[: max(60, n // 10)] + "\n```python\n" + snippet)[: n - 4] + "\n```"

    prompts = [("coding prompt (question + code)", n, coding(n)) for n in (200, 4096, 32768)]
    prompts.append(("all prose (worst case for NER)", 4096, sized(prose, 4096)))
    print(f"  pre-filter = policy regex + task allowlist + PII ({redactor.mode}); base = policy regex only; "
          "x base = pre p95 / base p95. Target: 4 KB coding prompt p95 <= 15 ms")
    print(f"  {'prompt':33s} {'bytes':>6s} {'base p95':>9s} {'p50':>8s} {'p95':>8s} {'cpu p50':>8s} {'cpu p95':>8s} "
          f"{'x base':>7s} {'p95/ref':>8s}")
    for label, size, prompt in prompts:
        n = runs if size < 32768 else max(10, runs // 4)
        base = timed(policy_only, prompt, n)
        pre(prompt)
        cpu: list[float] = []
        wall = timed(pre, prompt, n, cpu)
        print(f"  {label:33s} {size:>6} {pct(base, .95):9.3f} {pct(wall, .5):8.2f} {pct(wall, .95):8.2f} "
              f"{pct(cpu, .5):8.2f} {pct(cpu, .95):8.2f} {pct(wall, .95) / pct(base, .95):7.0f} "
              f"{pct(wall, .95) / ref:8.3f}")


def _git_show(ref: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{path}"], check=True, capture_output=True).stdout


def baseline_redactor(ref: str) -> PiiRedactor:
    """The PII stage of git `ref` (`carrot_hooks/guardrails/pii/` with the `pii:` section of its
    `policy/guardrails.yaml`, read by this tree's settings; everything else is this tree's), imported beside this tree's as
    `carrot_hooks.guardrails.pii_baseline`."""
    root = Path(tempfile.mkdtemp(prefix="pii-baseline-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # at exit: its modules may import lazily until then
    folder = root / "pii"
    folder.mkdir()
    pkg = "carrot_hooks/guardrails/pii"
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{ref}:{pkg}"], check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        (folder / name).write_bytes(_git_show(ref, f"{pkg}/{name}"))
    pii = yaml.safe_load(_git_show(ref, "policy/guardrails.yaml"))["pii"]  # only its pii: section, so other
    (root / "pii.yaml").write_text(yaml.safe_dump(pii, sort_keys=False))  # policy changes since REF do not matter
    settings = load_model(root / "pii.yaml", PiiSettings)
    spec = importlib.util.spec_from_file_location("carrot_hooks.guardrails.pii_baseline", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.PiiRedactor(settings)


def baseline_stream(ref: str):
    """`carrot_hooks/guardrails/stream.py` of git `ref`, imported beside this tree's (its `.rules` is this tree's)."""
    root = Path(tempfile.mkdtemp(prefix="stream-baseline-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    path = root / "stream.py"
    path.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:carrot_hooks/guardrails/stream.py"],
                                    check=True, capture_output=True).stdout)
    spec = importlib.util.spec_from_file_location("carrot_hooks.guardrails.stream_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bench_stream_cpu(output: OutputScanner, risk, settings, baseline: str | None) -> None:
    """CPU of the holdback filter per 4 KB answer streamed in small chunks, against `baseline`'s if given."""
    from carrot_hooks.guardrails import stream as this_tree

    filters = {"this tree": this_tree.StreamFilter}
    if baseline:
        filters = {f"baseline ({baseline})": baseline_stream(baseline).StreamFilter, **filters}
    code, _ = code_corpus(2.0)
    answers = [code[i:i + 4096] for i in range(0, len(code) - 4096, (len(code) - 4096) // 60)][:60]
    keywords, context = output.hold_keywords(risk), output.context_chars(risk)

    def run(cls, size: int) -> tuple[float, list[tuple[str, ...]]]:
        t = time.process_time()
        released = []
        for text in answers:
            extra = {"context": context} if "context" in inspect.signature(cls).parameters else {}
            f = cls(lambda t: output.scan(t, risk), keywords, settings.holdback_chars, settings.max_pending_chars,
                    lambda t: t, **extra)
            released.append(tuple(f.feed(text[i:i + size]) for i in range(0, len(text), size)) + (f.finish(),))
        return (time.process_time() - t) / len(answers) * 1000, released

    print(f"== stream holdback CPU per 4 KB answer ({len(answers)} real source files, risk low)")
    for size in (4, 16):
        cpu: dict[str, list[float]] = {name: [] for name in filters}
        outputs: dict[str, list[tuple[str, ...]]] = {}  # what each chunk released, not only the joined text
        for r in range(3):
            for name in (list(filters) if r % 2 == 0 else list(filters)[::-1]):  # who goes first alternates
                ms, outputs[name] = run(filters[name], size)
                cpu[name].append(ms)
        line = ", ".join(f"{name} {statistics.median(v):.1f} ms" for name, v in cpu.items())
        if baseline:
            a, b = (statistics.median(v) for v in cpu.values())
            base, this = outputs.values()
            line += (f"; ratio {b / a:.2f}x; the same text released at the same chunk in {sum(x == y for x, y in zip(base, this))}"
                     f"/{len(this)} answers, the same joined text in {sum(''.join(x) == ''.join(y) for x, y in zip(base, this))}")
        print(f"  {size}-character chunks: {line}")


def bench_prose_ab(policy: GuardrailPolicy, prompt_policy: PolicyScanner, redactors: dict[str, PiiRedactor],
                   prose: str, runs: int) -> None:
    """The 4 KB all-prose pre-filter with each redactor, interleaved run by run (who goes first alternates):
    CPU (this thread) and wall p50/p95 per redactor, and the last one's over the first one's."""
    text = sized(prose, 4096)
    counter = iter(range(10**9))
    cpu: dict[str, list[float]] = {label: [] for label in redactors}
    wall: dict[str, list[float]] = {label: [] for label in redactors}
    for red in redactors.values():  # warm both (first-call imports, caches)
        red.redact(f"{text} #warm", Vault())
    order = list(redactors.items())
    load_before = os.getloadavg()
    for i in range(runs):
        for label, red in order if i % 2 == 0 else order[::-1]:
            prompt = f"{text} #{next(counter)}"  # fresh text every run: no memo hits
            t, c = time.perf_counter(), time.thread_time()
            prompt_policy.scan(prompt)
            allowed_tasks(policy.task_allowlist, "bench", None, None)
            red.redact(prompt, Vault())
            cpu[label].append((time.thread_time() - c) * 1000)
            wall[label].append((time.perf_counter() - t) * 1000)
    load = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(load_before, os.getloadavg()))
    print(f"  4 KB all-prose pre-filter, {runs} runs each, interleaved (load average 1/5/15 min before/after: {load})")
    print(f"  {'PII stage':34s} {'cpu p50':>8s} {'cpu p95':>8s} {'wall p50':>9s} {'wall p95':>9s}")
    for label in redactors:
        print(f"  {label:34s} {pct(cpu[label], .5):8.2f} {pct(cpu[label], .95):8.2f} {pct(wall[label], .5):9.2f} "
              f"{pct(wall[label], .95):9.2f}")
    (old, new) = (order[0][0], order[-1][0])
    print(f"  {'ratio (this tree / baseline)':34s} " + " ".join(
        f"{pct(series[new], q) / pct(series[old], q):{w}.2f}" for series, q, w in
        ((cpu, .5, 8), (cpu, .95, 8), (wall, .5, 9), (wall, .95, 9))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evaldata", type=Path, default=ROOT.parent / "shared" / "evaldata")
    ap.add_argument("--code-mb", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--sdist-mb", type=float, default=12.0, help="real code from PyPI sdists for the secret FP rate")
    ap.add_argument("--secrets-only", action="store_true", help="only the secrets section")
    ap.add_argument("--pii-only", action="store_true", help="only PII in prose (pii_dev and own templates) and prose latency")
    ap.add_argument("--code-pii-only", nargs="*", metavar="GROUP", help="only PII on whole sdists (these groups, or all)")
    ap.add_argument("--docs-names", nargs="*", metavar="GROUP", help="only PERSON in the sdists' documentation "
                    "(these groups, or all); with --baseline REF also REF's PII stage and what each finds alone")
    ap.add_argument("--baseline", metavar="REF", help="also time the 4 KB prose pre-filter of the PII stage (with "
                    "--stream-only: the stream holdback filter) at git REF (its pii/ package and its policy's pii: section), "
                    "interleaved with this tree's")
    ap.add_argument("--stream-only", action="store_true", help="only the stream holdback filter's CPU per 4 KB answer")
    ap.add_argument("--sdists", type=Path,
                    default=Path(os.environ.get("CARROT_CACHE_DIR", Path.home() / ".cache" / "carrot")) / "sdists",
                    help="where the PyPI source releases for the PII-on-code check are downloaded (once)")
    args = ap.parse_args()
    policy = load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy)
    output, prompt_policy = OutputScanner(policy), PolicyScanner(policy)
    risk = policy.risk["low"]
    if args.stream_only:
        bench_stream_cpu(output, risk, policy.stream, args.baseline)
        return
    if args.docs_names is not None:
        redactors = {"this tree": PiiRedactor(policy.pii)}
        if args.baseline:
            redactors[args.baseline] = baseline_redactor(args.baseline)
        for group in args.docs_names or SDISTS:
            bench_docs_names(redactors, group, args.sdists)
        return
    if args.code_pii_only is not None:
        for group in args.code_pii_only or SDISTS:
            bench_code_pii(PiiRedactor(policy.pii), group, args.sdists)
        return

    if not args.pii_only:
        print("== secrets per provider family (tuned = rules were adjusted while looking at this set)")
        secrets_quality.report("secrets_dev.jsonl: gitleaks test cases", "tuned; same lineage as the Betterleaks rules, "
                               "so not independent of them", jsonl(args.evaldata / "secrets_dev.jsonl"), output.secrets.scan)
        secrets_quality.report("secrets_dev2.jsonl: Nosey Parker examples", "tuned (dev)",
                               jsonl(args.evaldata / "secrets_dev2.jsonl"), output.secrets.scan)
        secrets_quality.report("held-out: bench/secret_heldout.py provider formats, random values", "NOT tuned",
                               secret_heldout.samples(), output.secrets.scan)
        files, _ = secrets_quality.sdist_corpus(args.sdist_mb)
        secrets_quality.false_positives(files, output.secrets.scan)
        chunks = [t[i:i + 4096] for _, t in files for i in range(0, len(t), 4096) if len(t) - i >= 1024]
        secrets_quality.scan_speed(chunks, output.secrets.scan, output.commands.scan)
        keywords = sorted({k for r in (*output.secrets.rules.rules, *output.commands.rules.rules) for k in r.keywords})
        secrets_quality.hostile_scan(keywords, output.secrets.scan, output.commands.scan)
    if args.secrets_only:
        return

    print("== quality on the shared dev sets")
    pii_rows = jsonl(args.evaldata / "pii_dev.jsonl")
    ner = PiiRedactor(policy.pii)
    bench_pii(ner, pii_rows, f"pii_dev.jsonl, tuned, {ner.mode}: {ner.model_name}")
    bench_pii(ner, joined(pii_rows, 30), "pii_dev.jsonl, 30 rows joined per text (long prose, as in the latency table)")
    # held-out-4 keeps the seed it was first scored with (as held-out-3 on its own branch)
    for group, seed in (("tuned", 1), ("held-out", 2), ("held-out-2", 3), ("held-out-3", 4), ("held-out-4", 4), ("held-out-5", 5),
                        ("held-out-6", 6)):
        bench_pii(ner, pii_templates.rows(group, 400, seed), f"own templates, {group}")
    # written by an independent reviewer (24th session) who never saw the rules: 280 harmless lines of lower-case
    # developer chat built to trip name rules (tools, algorithms, companies named like people; other languages),
    # 120 with lower-case full names in sentence slots; tuned: the verb rule of names.introduced came from its false spans
    bench_pii(ner, jsonl(ROOT / "bench" / "data" / "pii_names_lowercase_chat.jsonl"), "lower-case developer chat, tuned")
    if args.pii_only:  # the latency table's code snippet is the start of the same corpus
        hostile.report({"PII stage": ner.analyze, "policy regexes": prompt_policy.scan,
                        "secret + command scan": lambda t: (output.secrets.scan(t), output.commands.scan(t)),
                        "RAG query shaping": hostile.rag_query_shaping}, policy.pii.timeout_ms)
        print("== latency in ms (fresh text every run: no memo hits)")
        rng = random.Random(7)
        prose = " ".join(r["text"] for r in rng.sample(pii_rows, 60))
        bench_prefilter(policy, prompt_policy, ner, prose, code_corpus(0.05)[0][:40000], args.runs, reference_ms())
        if args.baseline:
            bench_prose_ab(policy, prompt_policy, {f"baseline ({args.baseline})": baseline_redactor(args.baseline),
                                                   "this tree": ner}, prose, args.runs * 4)
        return
    patterns = PiiRedactor(policy.pii.model_copy(update={"spacy_models": ()}))
    bench_pii(patterns, pii_rows, "patterns only")
    out_of_scope = Counter(s["entity_type"] for r in pii_rows for s in r["spans"] if s["entity_type"] not in IN_SCOPE)
    print(f"    not redacted by policy (out of scope): {dict(out_of_scope)}")
    bench_commands(output.commands.scan, args.evaldata)

    print(f"== false positives on real code (<= {args.code_mb} MB, tests excluded)")
    code, packages = code_corpus(args.code_mb)
    mb = len(code.encode()) / 1e6
    t = time.perf_counter()
    secret_hits = output.secrets.scan(code)
    secret_s = time.perf_counter() - t
    command_hits = output.commands.scan(code)
    print(f"  corpus {mb:.2f} MB from {', '.join(packages)}")
    print(f"  secrets: {len(secret_hits) / mb:.2f} FP/MB {dict(Counter(h.rule_id for h in secret_hits))} "
          f"(scan {secret_s / mb * 1000:.0f} ms/MB)")
    by_action = Counter(h.action for h in command_hits)
    print(f"  commands: {len(command_hits) / mb:.2f} hits/MB by action {dict(by_action)} "
          f"{dict(Counter(h.rule_id for h in command_hits))}")
    pii_hits = Counter(h.entity for i in range(0, len(code), 32768) for h in ner.analyze(code[i:i + 32768]))
    print(f"  PII (code pasted as 32 KB prompts, no fences): {sum(pii_hits.values()) / mb:.2f} hits/MB {dict(pii_hits)}")
    for group in SDISTS:
        bench_code_pii(ner, group, args.sdists)

    print("== latency in ms (fresh text every run: no memo hits)")
    ref = reference_ms()
    print(f"  same-process baseline: a 1M-step pure-Python loop takes {ref:.0f} ms in this run; "
          "'ref' = latency / that loop, comparable across machines and load")
    rng = random.Random(7)
    prose = " ".join(r["text"] for r in rng.sample(pii_rows, 60))
    snippet = code[:40000]
    secrets_rows = [r["text"] for r in jsonl(args.evaldata / "secrets_dev.jsonl") if r["label"] == "secret"]
    answer_src = f"{snippet}\n" + "\n".join(rng.sample(secrets_rows, 20))
    bench_prefilter(policy, prompt_policy, ner, prose, snippet, args.runs, ref)
    if args.baseline:
        bench_prose_ab(policy, prompt_policy, {f"baseline ({args.baseline})": baseline_redactor(args.baseline),
                                               "this tree": ner}, prose, args.runs * 4)

    def post(text: str) -> None:
        output.scan(text, risk)

    for size in (200, 4096, 32768):
        runs = args.runs if size < 32768 else max(10, args.runs // 4)
        answer = sized(answer_src, size)
        post(answer)
        post_t = timed(post, answer, runs)
        print(f"  {size:>6} B post-filter (secrets+commands) on code+secrets       p50 {pct(post_t, .5):8.3f} "
              f"p95 {pct(post_t, .95):8.3f}  (p95 {pct(post_t, .95) / ref:.4f} ref)")

    print("== streaming: first-token delay added by the holdback (20 ms between 4-char chunks)")
    cmd_rows = [r["command"] for r in jsonl(args.evaldata / "commands_dev.jsonl")]
    bodies = cmd_rows + secrets_rows + [snippet[i:i + 300] for i in range(0, 6000, 300)]
    starts = ["Sure! ", "Here is the fix:\n", "To do that, run ", "```bash\n", "The problem is that "]
    cases = {
        "answers opening with prose or a fence": [rng.choice(starts) + rng.choice(bodies) for _ in range(100)],
        # stress: the first token is itself a command or a key, which must wait until it is known
        "answers opening with a bare command/secret": [rng.choice(bodies) for _ in range(40)],
    }
    for label, answers in cases.items():
        base, guarded = asyncio.run(first_token_delays(policy, answers, 0.02, 4))
        added = [g - b for g, b in zip(guarded, base)]
        late = sum(a > 50 for a in added)
        print(f"  {label}: pass-through p95 {pct(base, .95):.2f} ms; guarded p50 {pct(guarded, .5):.2f} "
              f"p95 {pct(guarded, .95):.2f} ms; added p95 {pct(added, .95):.2f} ms (target <= 50), "
              f"{late}/{len(added)} answers delayed > 50 ms")

    chunks = [answer_src[i:i + 4] for i in range(0, min(len(answer_src), 8000), 4)]
    f = StreamFilter(lambda s: output.scan(s, risk), output.hold_keywords(risk), policy.stream.holdback_chars,
                     policy.stream.max_pending_chars)
    t = time.perf_counter()
    for c in chunks:
        f.feed(c)
    f.finish()
    per_chunk = (time.perf_counter() - t) / len(chunks) * 1000
    print(f"  holdback CPU per 4-char chunk: {per_chunk:.3f} ms")


if __name__ == "__main__":
    main()
