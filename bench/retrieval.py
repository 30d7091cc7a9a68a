"""Retrieval quality and speed on the shared dev sets: dense-only vs full-text-only vs hybrid.

Code: for each SWE-bench pytest issue, index that release's `src/` (sdist cached under
.state/bench/sdists, fetched with `pip download --no-binary :all:`), query with the issue
text, score file-level recall@1/3/5/10 (files ranked by their best chunk).
Docs: index docqa_dev/docs, query with each question, score file recall and chunk recall
(a retrieved chunk overlapping a gold citation's line range).

    .venv/bin/python bench/retrieval.py [--limit N] [--skip-code] [--skip-docs] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag_indexer.embedding import Embedder
from rag_indexer.indexer import index_tree
from rag_indexer.retrieve import MODES, Query, Retriever
from rag_indexer.settings import embedding_spec, load_settings, state_dir, store_url
from rag_indexer.store import Store

EVAL = ROOT.parent / "shared" / "evaldata"
KS = (1, 3, 5, 10)


def sdist_src(spec: str, cache: Path) -> Path:
    """`pytest==X` → the unpacked release's src/ (downloaded once into `cache`)."""
    name, version = spec.split("==")
    folder = cache / f"{name}-{version}"
    if not folder.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tarball = cache / f"{name}-{version}.tar.gz"
        if not tarball.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            spec, "-d", str(cache)], check=True)
        with tarfile.open(tarball) as tf:
            tf.extractall(cache, filter="data")
    return folder / "src"


def ranked_files(hits) -> list[str]:
    return list(dict.fromkeys(h.chunk.path for h in hits))


def recall(ranked: list[str], gold: set[str], k: int) -> float:
    return float(any(g in ranked[:k] for g in gold))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] if values else float("nan")


def bench_code(store, index_embedder, retriever, settings, limit, fresh) -> dict:
    items = [json.loads(line) for line in (EVAL / "code_retrieval_dev.jsonl").read_text().splitlines()][:limit]
    cache = state_dir() / "bench" / "sdists"
    index_stats = []
    for spec in sorted({it["pypi_sdist"] for it in items}):
        rep = index_tree(store, index_embedder, settings.embedding, "code", sdist_src(spec, cache), f"bench-{spec}", reset=fresh)
        index_stats.append(rep)
        print(f"  indexed {spec}: {rep.chunks_total} chunks, {rep.chunks_written} written in {rep.seconds:.1f}s", flush=True)
    scores = {m: {k: [] for k in KS} for m in MODES}
    latency = {m: [] for m in MODES}
    for it in items:
        gold = {g.removeprefix("src/") for g in it["gold_files"]}
        for mode in MODES:
            t0 = time.perf_counter()
            hits = retriever.search(Query("code", f"bench-{it['pypi_sdist']}", it["problem_statement"], 60, mode=mode))
            latency[mode].append(time.perf_counter() - t0)
            files = ranked_files(hits)
            for k in KS:
                scores[mode][k].append(recall(files, gold, k))
    written = sum(r.chunks_written for r in index_stats)
    secs = sum(r.seconds for r in index_stats)
    return {
        "n": len(items),
        "recall": {m: {f"R@{k}": round(statistics.mean(v), 3) for k, v in scores[m].items()} for m in MODES},
        "query_ms": {m: {"p50": round(pct(v, 50) * 1000, 1), "p95": round(pct(v, 95) * 1000, 1)} for m, v in latency.items()},
        "indexing": {"chunks_written": written, "seconds": round(secs, 1),
                     "chunks_per_s": round(written / secs, 1) if secs else None,
                     "chunks_in_indexes": sum(r.chunks_total for r in index_stats)},
    }


def bench_docs(store, index_embedder, retriever, settings, limit, fresh) -> dict:
    questions = [json.loads(line) for line in (EVAL / "docqa_dev" / "questions.jsonl").read_text().splitlines()][:limit]
    rep = index_tree(store, index_embedder, settings.embedding, "docs", EVAL / "docqa_dev" / "docs", "bench-docqa", reset=fresh)
    print(f"  indexed docs: {rep.chunks_total} chunks, {rep.chunks_written} written in {rep.seconds:.1f}s", flush=True)
    file_scores = {m: {k: [] for k in KS} for m in MODES}
    chunk_scores = {m: {k: [] for k in KS} for m in MODES}
    latency = {m: [] for m in MODES}
    for q in questions:
        gold_files = {Path(f).name for f in q["gold_files"]}
        cites = [(Path(c["file"]).name, c["start_line"], c["end_line"]) for c in q["gold_citations"]]
        for mode in MODES:
            t0 = time.perf_counter()
            hits = retriever.search(Query("docs", "bench-docqa", q["question"], 10, mode=mode))
            latency[mode].append(time.perf_counter() - t0)
            files = ranked_files(hits)
            for k in KS:
                file_scores[mode][k].append(recall(files, gold_files, k))
                top = hits[:k]
                chunk_scores[mode][k].append(float(any(
                    h.chunk.path == f and h.chunk.start_line <= e and h.chunk.end_line >= s for h in top for f, s, e in cites
                )))
    return {
        "n": len(questions), "chunks": rep.chunks_total,
        "file_recall": {m: {f"R@{k}": round(statistics.mean(v), 3) for k, v in file_scores[m].items()} for m in MODES},
        "chunk_recall": {m: {f"R@{k}": round(statistics.mean(v), 3) for k, v in chunk_scores[m].items()} for m in MODES},
        "query_ms": {m: {"p50": round(pct(v, 50) * 1000, 1), "p95": round(pct(v, 95) * 1000, 1)} for m, v in latency.items()},
        "indexing": {"chunks_written": rep.chunks_written, "seconds": round(rep.seconds, 1),
                     "chunks_per_s": round(rep.chunks_per_s, 1)},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first N items of each set")
    ap.add_argument("--skip-code", action="store_true")
    ap.add_argument("--skip-docs", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="drop the bench indexes first (embedding cache stays)")
    args = ap.parse_args()
    settings = load_settings()
    # benchmarks rank everything: no relevance cut-off
    settings = settings.model_copy(update={"retrieval": replace_retrieval(settings.retrieval)})
    store = Store(store_url(settings))
    embedder = Embedder(embedding_spec(settings))  # query side, as in the gateway
    index_embedder = Embedder(embedding_spec(settings, for_query=False))
    retriever = Retriever(store, embedder, settings.retrieval)
    out = {"model": embedder.model_id}
    if not args.skip_code:
        print("code retrieval (SWE-bench pytest issues):", flush=True)
        out["code"] = bench_code(store, index_embedder, retriever, settings, args.limit, args.fresh)
    if not args.skip_docs:
        print("doc retrieval (ORD-QA):", flush=True)
        out["docs"] = bench_docs(store, index_embedder, retriever, settings, args.limit, args.fresh)
    print(json.dumps(out, indent=2))
    dest = state_dir() / "bench" / "retrieval.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    return 0


def replace_retrieval(cfg):
    """The gateway's retrieval settings, minus the relevance floor (recall@10 needs ten hits)."""
    return cfg.model_copy(update={"min_dense_similarity": -1.0, "min_fulltext_score": 0.0})


if __name__ == "__main__":
    sys.exit(main())
