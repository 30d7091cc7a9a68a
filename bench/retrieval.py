"""Retrieval quality on every shared dev set, printed per set: dense-only vs full-text-only vs hybrid.

Sets (../shared/evaldata):
  dev    code_retrieval_dev.jsonl   SWE-bench pytest issues          TUNED ON (every ranking rule was tried here)
  dev2   code_retrieval_dev2.jsonl  sphinx / xarray / pylint issues  HELD OUT, except the slice
         `--max-releases 3` (two query/file-kind rules were written from its misses); keep
         `--skip-releases 3` and later slices aside as the held-out check
  docqa  docqa_dev                  ORD-QA questions over 32 guides  docs (chunking and fusion settings tuned here)

Code: each issue's release (the whole sdist: source, tests, docs, changelog; downloaded once into
${CARROT_CACHE_DIR:-~/.cache/carrot}/sdists) is indexed as `bench-<release>`, queried with the issue text;
file-level recall@1/3/5/10 and MRR (files ranked by their best chunk). Goals: R@1 >= 0.75, R@3 >= 0.95.
Docs: file@k (a gold document among the first k distinct documents) and passage@k (one of the first k
returned chunks contains every non-blank, non-heading line of a gold passage). Goals: file@1 >= 0.85,
passage@5 >= 0.95.

Indexing dev2 in full (44 releases) is hours of CPU on a shared 2-core machine: `--max-releases N` keeps,
per project, the N releases with the most issues (the subsample is printed); `--skip-releases M` starts after
the first M (another slice).

    .venv/bin/python bench/retrieval.py [--sets dev,dev2,docqa] [--max-releases N] [--skip-releases M]
                                        [--limit N] [--fresh]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from carrot_common.paths import state_dir
from rag_indexer.doc_chunker import count_tokens
from rag_indexer.embedding import Embedder
from rag_indexer.indexer import index_tree
from rag_indexer.quick_settings import embedding_spec, store_url
from rag_indexer.retrieve import MODES, Query, Retriever
from rag_indexer.settings import load_settings
from rag_indexer.store import Store

EVAL = ROOT.parent / "shared" / "evaldata"
if not EVAL.exists():  # a git worktree beside the main checkout
    EVAL = Path("/work/shared/evaldata")
KS = (1, 3, 5, 10)
CODE_SETS = {"dev": ("code_retrieval_dev.jsonl", "tuned"), "dev2": ("code_retrieval_dev2.jsonl", "held-out")}
LOOKED_AT_RELEASES = {"dev2": 3}  # per project, the first N releases (by issue count) whose misses were read
CACHE = Path(os.environ.get("CARROT_CACHE_DIR", Path.home() / ".cache" / "carrot")) / "sdists"


def sdist_root(spec: str) -> Path:
    """`name==X` → the unpacked release (downloaded once into the machine cache; setuptools<81 lets old
    xarray sdists build their metadata)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name, version = spec.split("==")
    found = [p for p in CACHE.glob("*.tar.gz") if p.name.lower() == f"{name}-{version}.tar.gz".lower()]
    if not found:
        constraint = CACHE / "constraints.txt"
        constraint.write_text("setuptools<81\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", spec,
                        "-d", str(CACHE)], check=True, env={**os.environ, "PIP_CONSTRAINT": str(constraint)})
        found = [p for p in CACHE.glob("*.tar.gz") if p.name.lower() == f"{name}-{version}.tar.gz".lower()]
    with tarfile.open(found[0]) as tf:
        top = tf.getmembers()[0].name.split("/")[0]
        if not (CACHE / top).exists():
            tf.extractall(CACHE, filter="data")
    return CACHE / top


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else float("nan")


def index_rate(reports) -> dict:
    written = sum(r.chunks_written for r in reports)
    secs = sum(r.seconds for r in reports)
    return {"chunks_written": written, "seconds": round(secs, 1),
            "chunks_per_s": round(written / secs, 2) if secs and written else None}


def bench_code(set_name: str, store, index_embedder, retriever, settings, args) -> dict:
    file, label = CODE_SETS[set_name]
    if args.skip_releases < LOOKED_AT_RELEASES.get(set_name, 0):
        label = f"held-out but its first {LOOKED_AT_RELEASES[set_name]} releases per project were looked at"
    items = [json.loads(line) for line in (EVAL / file).read_text().splitlines()]
    per_release = collections.Counter(it["pypi_sdist"] for it in items)
    by_project: dict[str, list[str]] = collections.defaultdict(list)
    for spec, _ in per_release.most_common():
        by_project[spec.split("==")[0]].append(spec)
    first = args.skip_releases
    keep = [spec for specs in by_project.values()
            for spec in specs[first : None if args.max_releases is None else first + args.max_releases]]
    items = [it for it in items if it["pypi_sdist"] in keep][: args.limit]
    print(f"{set_name} ({label}): {len(items)} of {sum(per_release.values())} issues, "
          f"releases {', '.join(sorted(keep))}", flush=True)
    reports = []
    for spec in sorted({it["pypi_sdist"] for it in items}):
        rep = index_tree(store, index_embedder, settings.embedding, "code", sdist_root(spec), f"bench-{spec}",
                         reset=args.fresh)
        reports.append(rep)
        print(f"  indexed {spec}: {rep.chunks_total} chunks, {rep.chunks_written} written in {rep.seconds:.1f}s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    scores = {m: {k: [] for k in KS} for m in MODES}
    rr = {m: [] for m in MODES}
    latency = {m: [] for m in MODES}
    for it in items:
        gold = set(it["gold_files"])
        for mode in MODES:
            t0 = time.perf_counter()
            hits = retriever.search(Query("code", f"bench-{it['pypi_sdist']}", it["problem_statement"], 30, mode=mode))
            latency[mode].append(time.perf_counter() - t0)
            files = list(dict.fromkeys(h.chunk.path for h in hits))
            for k in KS:
                scores[mode][k].append(float(any(g in files[:k] for g in gold)))
            rr[mode].append(next((1 / (i + 1) for i, f in enumerate(files) if f in gold), 0.0))
    return {
        "set": set_name, "label": label, "n": len(items), "releases": sorted(keep),
        "recall": {m: {**{f"R@{k}": round(statistics.mean(v), 3) for k, v in scores[m].items()},
                       "MRR": round(statistics.mean(rr[m]), 3)} for m in MODES},
        "query_ms": {m: {"p50": round(pct(v, 50) * 1000, 1), "p95": round(pct(v, 95) * 1000, 1)} for m, v in latency.items()},
        "indexing": index_rate(reports),
    }


def _content_lines(doc: Path, start: int, end: int) -> list[int]:
    """A gold passage's lines that carry content: not blank, not a heading (passages end on the next one)."""
    lines = doc.read_text().splitlines()
    return [n for n in range(start, end + 1) if n <= len(lines) and lines[n - 1].strip()
            and not lines[n - 1].lstrip().startswith("#")]


def bench_docs(store, index_embedder, retriever, settings, args) -> dict:
    docs = EVAL / "docqa_dev" / "docs"
    questions = [json.loads(line) for line in (EVAL / "docqa_dev" / "questions.jsonl").read_text().splitlines()][: args.limit]
    rep = index_tree(store, index_embedder, settings.embedding, "docs", docs, "bench-docqa", reset=args.fresh)
    tokens = sum(count_tokens(p.read_text()) for p in docs.glob("*.md"))
    print(f"docqa: indexed {rep.chunks_total} passages, {rep.chunks_written} written in {rep.seconds:.1f}s "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    file_scores = {m: {k: [] for k in KS} for m in MODES}
    passage_scores = {m: {k: [] for k in KS} for m in MODES}
    latency = {m: [] for m in MODES}
    for q in questions:
        gold_files = {Path(f).name for f in q["gold_files"]}
        cites = [(Path(c["file"]).name, _content_lines(docs / Path(c["file"]).name, c["start_line"], c["end_line"]))
                 for c in q["gold_citations"]]
        for mode in MODES:
            t0 = time.perf_counter()
            hits = retriever.search(Query("docs", "bench-docqa", q["question"], 10, mode=mode))
            latency[mode].append(time.perf_counter() - t0)
            files = list(dict.fromkeys(h.chunk.path for h in hits))
            for k in KS:
                file_scores[mode][k].append(float(any(g in files[:k] for g in gold_files)))
                passage_scores[mode][k].append(float(any(
                    h.chunk.path == f and lines and h.chunk.start_line <= lines[0] and h.chunk.end_line >= lines[-1]
                    for h in hits[:k] for f, lines in cites)))
    return {
        "set": "docqa", "n": len(questions), "passages": rep.chunks_total,
        "file": {m: {f"@{k}": round(statistics.mean(v), 3) for k, v in file_scores[m].items()} for m in MODES},
        "passage": {m: {f"@{k}": round(statistics.mean(v), 3) for k, v in passage_scores[m].items()} for m in MODES},
        "query_ms": {m: {"p50": round(pct(v, 50) * 1000, 1), "p95": round(pct(v, 95) * 1000, 1)} for m, v in latency.items()},
        "indexing": {**index_rate([rep]), "doc_tokens": tokens,
                     "tokens_per_s": round(tokens / rep.seconds, 1) if rep.chunks_written and rep.seconds else None},
    }


def summary(res: dict) -> str:
    if res["set"] == "docqa":
        f, p = res["file"]["hybrid"], res["passage"]["hybrid"]
        return (f"docqa: file@1 {f['@1']:.3f} (goal 0.85) file@3 {f['@3']:.3f} passage@5 {p['@5']:.3f} (goal 0.95) "
                f"| dense file@1 {res['file']['dense']['@1']:.3f}, full-text file@1 {res['file']['fulltext']['@1']:.3f}")
    r = res["recall"]["hybrid"]
    return (f"{res['set']} ({res['label']}, n={res['n']}): R@1 {r['R@1']:.3f} (goal 0.75) R@3 {r['R@3']:.3f} (goal 0.95) "
            f"MRR {r['MRR']:.3f} | dense R@1 {res['recall']['dense']['R@1']:.3f}, "
            f"full-text R@1 {res['recall']['fulltext']['R@1']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="dev,dev2,docqa", help="comma-separated: dev, dev2, docqa")
    ap.add_argument("--max-releases", type=int, default=None, help="per project: the N releases with the most issues")
    ap.add_argument("--skip-releases", type=int, default=0, help="per project: leave out the N releases with the most "
                    "issues first (another slice of a set, e.g. one kept aside as a held-out check)")
    ap.add_argument("--limit", type=int, default=None, help="first N items of each set")
    ap.add_argument("--fresh", action="store_true", help="drop the bench indexes first (embedding cache stays)")
    ap.add_argument("--index-threads", type=int, default=None, help="ONNX threads for indexing (policy default)")
    args = ap.parse_args()
    settings = load_settings()
    if args.index_threads:
        settings = settings.model_copy(update={"embedding": settings.embedding.model_copy(
            update={"index_threads": args.index_threads})})
    store = Store(store_url(settings))
    embedder = Embedder(embedding_spec(settings))  # query side, as in the gateway
    index_embedder = Embedder(embedding_spec(settings, for_query=False))
    retriever = Retriever(store, embedder, settings.retrieval)
    print(f"model {embedder.model_id}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    results = []
    for name in args.sets.split(","):
        if name == "docqa":
            results.append(bench_docs(store, index_embedder, retriever, settings, args))
        else:
            results.append(bench_code(name, store, index_embedder, retriever, settings, args))
        print(summary(results[-1]), flush=True)
    print(json.dumps(results, indent=2))
    print("\n".join(summary(r) for r in results))
    dest = state_dir() / "bench" / f"retrieval-{args.sets.replace(',', '-')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
