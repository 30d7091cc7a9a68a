"""Retrieval latency on a >=10,000-chunk index, and one-file re-indexing in a >=1,000-file repo.

The repo is real code: the `src/` trees of all pytest releases the retrieval bench uses,
side by side (run bench/retrieval.py first: its embedding cache makes building this quick).
Queries are real: ORD-QA questions and the first line of each SWE-bench issue.
Prints p50/p95 wall and CPU time per query and stage, with ratios against a baseline run
in the same process (a `SELECT 1` round trip and the full-text-only path).

    .venv/bin/python bench/rag_latency.py [--queries N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag_indexer.embedding import Embedder
from rag_indexer.indexer import index_tree
from rag_indexer.retrieve import Query, Retriever
from rag_indexer.settings import embedding_spec, load_settings, state_dir, store_url
from rag_indexer.store import Store

EVAL = ROOT.parent / "shared" / "evaldata"
NAME = "bench-latency"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def build_repo() -> Path:
    sdists = state_dir() / "bench" / "sdists"
    repo = state_dir() / "bench" / "latency_repo"
    for src in sorted(sdists.glob("pytest-*/src")):
        dest = repo / src.parent.name
        if not dest.exists():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    if not repo.exists():
        sys.exit("no pytest sources under .state/bench/sdists: run bench/retrieval.py first")
    return repo


def queries(limit: int) -> list[str]:
    qs = [json.loads(line)["question"] for line in (EVAL / "docqa_dev" / "questions.jsonl").read_text().splitlines()]
    qs += [json.loads(line)["problem_statement"].strip().splitlines()[0]
           for line in (EVAL / "code_retrieval_dev.jsonl").read_text().splitlines()]
    return qs[:limit]


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=124)
    args = ap.parse_args()
    settings = load_settings()
    store = Store(store_url(settings))
    embedder = Embedder(embedding_spec(settings))  # query side, as in the gateway
    index_embedder = Embedder(embedding_spec(settings, for_query=False))
    retriever = Retriever(store, embedder, settings.retrieval)
    repo = build_repo()

    rep = index_tree(store, index_embedder, settings.embedding, "code", repo, NAME, commit="bench")
    info = store.index("code", NAME)
    print(f"index: {info.chunks} chunks from {rep.files} files ({rep.chunks_written} written in {rep.seconds:.1f}s)")

    # one-file change in the >=1,000-file repo
    target = next(repo.glob("*/_pytest/python.py"))
    original = target.read_text()
    target.write_text(original + "\n\ndef bench_added_function():\n    return 'incremental'\n")
    try:
        inc = index_tree(store, index_embedder, settings.embedding, "code", repo, NAME, commit="bench")
    finally:
        target.write_text(original)
    restore = index_tree(store, index_embedder, settings.embedding, "code", repo, NAME, commit="bench")
    print(f"re-index after a one-file change: {inc.seconds:.2f}s ({inc.indexed} file re-indexed of {inc.files}); "
          f"restore {restore.seconds:.2f}s")

    qs = queries(args.queries)
    for q in qs[:5]:  # warm-up
        retriever.search(Query("code", NAME, q, settings.retrieval.top_k))
    base, embed, full, hybrid = [], [], [], []
    for q in qs:
        base.append(timed(lambda: store.conn.execute("SELECT 1").fetchone()))
        embed.append(timed(embedder.embed, [q]))
        full.append(timed(retriever.search, Query("code", NAME, q, settings.retrieval.top_k, mode="fulltext")))
        hybrid.append(timed(retriever.search, Query("code", NAME, q, settings.retrieval.top_k)))

    def row(label, samples):
        wall = [s[1] for s in samples]
        cpu = [s[2] for s in samples]
        return {"stage": label, "wall_p50_ms": round(pct(wall, 50), 2), "wall_p95_ms": round(pct(wall, 95), 2),
                "cpu_p50_ms": round(pct(cpu, 50), 2), "cpu_p95_ms": round(pct(cpu, 95), 2)}

    rows = [row("SELECT 1 (baseline)", base), row("query embedding", embed), row("full-text only", full),
            row("hybrid retrieval (embed + search)", hybrid)]
    b95, f95 = rows[0]["wall_p95_ms"], rows[2]["wall_p95_ms"]
    print(f"{len(qs)} queries on {info.chunks} chunks ({embedder.model_id})")
    for r in rows:
        print(f"  {r['stage']:<36} wall p50 {r['wall_p50_ms']:7.2f} ms  p95 {r['wall_p95_ms']:7.2f} ms   "
              f"cpu p50 {r['cpu_p50_ms']:7.2f} ms  p95 {r['cpu_p95_ms']:7.2f} ms")
    h95 = rows[3]["wall_p95_ms"]
    print(f"  hybrid p95 = {h95 / b95:.0f}x SELECT-1 p95, {h95 / f95:.2f}x full-text-only p95; target <= 30 ms: "
          f"{'met' if h95 <= 30 else 'NOT met'}")
    out = {"chunks": info.chunks, "files": rep.files, "queries": len(qs), "stages": rows,
           "reindex_one_file_s": round(inc.seconds, 2), "model": embedder.model_id}
    (state_dir() / "bench" / "rag_latency.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
