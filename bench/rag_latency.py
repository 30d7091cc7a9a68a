"""What retrieval adds to a gateway request: query embedding + search on a >=10,000-chunk code index.

The index is real code: `src/` trees of the pytest releases the retrieval bench downloads, side by
side, as many as it takes to pass 10,000 chunks (run bench/retrieval.py first: its embedding cache
makes building this quick). The queries are what the gateway retrieves for, the last user message
as sent: the full text of each SWE-bench issue (long, with logs and code) and each ORD-QA question
(short). Each round runs every query once through the gateway's code path (`Retriever.search`,
hybrid, top_k from policy/rag.yaml) and prints p50/p95 wall and client CPU per stage (the query
embedding runs in parallel with the lexical searches); Postgres' own CPU is a mean per query.
Also: re-indexing after a one-file change in a >=1,000-file repo (a second index: whole sdists,
tests and docs included).

    .venv/bin/python bench/rag_latency.py [--rounds 3] [--min-chunks 10000] [--reindex-files 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.retrieval import CACHE, EVAL
from carrot_common.paths import state_dir
from rag_indexer.embedding import Embedder
from rag_indexer.files import list_files
from rag_indexer.indexer import chunk_file, index_tree
from rag_indexer.quick_settings import embedding_spec, store_url
from rag_indexer.retrieve import Query, Retriever
from rag_indexer.settings import load_settings
from rag_indexer.store import Store

NAME = "bench-latency"
TARGET_MS = 20.0
STAGES = {  # object attribute -> stage label
    ("store", "index"): "index lookup",
    ("embedder", "embed"): "query embedding",
    ("store", "dense"): "dense search (HNSW) + kinds",
    ("store", "read"): "full-text, symbols, paths",  # one round trip
    ("store", "typo_corrections"): "typo corrections",
    ("store", "chunk_meta"): "candidate paths, kinds",
    ("store", "phrase_counts"): "phrase counts",
    ("store", "chunks"): "chunk fetch",
}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def build_repo(folder: str, enough, part: str = "src") -> Path:
    """Release trees (`part` of each unpacked sdist: "src", or "" for all of it) copied side by side,
    newest first, until `enough(files, chunks)` says so."""
    releases = sorted(p for p in CACHE.glob("pytest-*") if p.is_dir())
    if not releases:
        sys.exit(f"no pytest sources under {CACHE}: run bench/retrieval.py first")
    repo = state_dir() / "bench" / folder
    shutil.rmtree(repo, ignore_errors=True)
    files = chunks = 0
    for release in reversed(releases):
        dest = repo / release.name
        shutil.copytree(release / part, dest, ignore=shutil.ignore_patterns("__pycache__"))
        tree = list_files(dest)
        files += len(tree)
        chunks += sum(len(chunk_file("code", f.path, f.abspath.read_text(errors="replace"))) for f in tree)
        if enough(files, chunks):
            return repo
    sys.exit(f"only {files} files / {chunks} chunks in all downloaded releases")


def reindex_one_file(store, embedder, settings, min_files: int):
    """Seconds to re-index a >= `min_files`-file repo after one file changed (issue 4, item 3)."""
    repo = build_repo("reindex_repo", lambda files, _: files >= min_files, part="")  # with tests and docs
    index_tree(store, embedder, settings.embedding, "code", repo, "bench-reindex", commit="bench")
    target = next(repo.glob("*/src/_pytest/python.py"))
    original = target.read_text()
    target.write_text(original + "\n\ndef bench_added_function():\n    return 'incremental'\n")
    try:
        return index_tree(store, embedder, settings.embedding, "code", repo, "bench-reindex", commit="bench")
    finally:
        target.write_text(original)
        index_tree(store, embedder, settings.embedding, "code", repo, "bench-reindex", commit="bench")


def messages() -> dict[str, list[str]]:
    issues = [json.loads(line)["problem_statement"] for line in (EVAL / "code_retrieval_dev.jsonl").read_text().splitlines()]
    questions = [json.loads(line)["question"] for line in (EVAL / "docqa_dev" / "questions.jsonl").read_text().splitlines()]
    return {"issues (long)": issues, "questions (short)": questions}


class StageClock:
    """Wraps the store's and embedder's methods on one retriever to time each stage of a search."""

    def __init__(self, retriever: Retriever):
        self.current: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (owner, attr), label in STAGES.items():
            obj = getattr(retriever, owner)
            setattr(obj, attr, self._timed(getattr(obj, attr), label))

    def _timed(self, fn, label):
        def run(*args, **kwargs):
            w, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                acc = self.current[label]
                acc[0] += (time.perf_counter() - w) * 1000
                acc[1] += (time.thread_time() - c) * 1000
        return run

    def search(self, retriever: Retriever, query: Query) -> dict[str, tuple[float, float]]:
        """Per stage (wall, CPU of the thread that ran it); the embedding overlaps the lexical searches,
        so stage walls do not add up; the rest of the client CPU is shaping, fusion and the ONNX threads
        that help the embedding's own (policy `query_threads`)."""
        self.current.clear()
        w, c = time.perf_counter(), time.process_time()
        retriever.search(query)
        total = ((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000)
        out = {k: (v[0], v[1]) for k, v in self.current.items()}
        # process CPU no stage's thread ran: shaping and fusion, and the ONNX threads beside the embedding's own
        out["shaping, fusion, ONNX"] = (float("nan"), total[1] - sum(v[1] for v in out.values()))
        out["TOTAL embedding + search"] = total
        return out


def server_cpu_ms(store: Store) -> float:
    """CPU time (user + system) the Postgres backend serving `store` has used so far."""
    pid = store.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # external server
        return float("nan")
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _fastembed_model(spec):
    """fastembed's own model object for `spec` (the baseline: its defaults, all threads, spinning, batch 32)."""
    from fastembed import TextEmbedding

    from rag_indexer.embedding import OFFLINE_ID, OFFLINE_NAME, setup_offline_model

    model_id = Embedder(spec, fast=True).model_id
    if model_id == OFFLINE_ID:
        return TextEmbedding(OFFLINE_NAME, specific_model_path=str(setup_offline_model(spec.models_dir)))
    return TextEmbedding(model_id, cache_dir=str(spec.models_dir / "fastembed"), local_files_only=True)


def embedding_throughput(settings, sample: int) -> None:
    """Cold indexing's embedding cost (no cache) for code chunks and doc passages: the indexer's path
    (`Embedder.embed`) against fastembed's own `embed` with its defaults, interleaved round by round so
    load changes hit both alike; wall and CPU seconds of this process (ratios are the comparable part)."""
    from rag_indexer.doc_chunker import chunk_doc, count_tokens
    from rag_indexer.indexer import embed_texts

    releases = sorted(p for p in CACHE.glob("pytest-*") if p.is_dir())
    code = [c for f in list_files(releases[-1] / "src") for c in chunk_file("code", f.path, f.abspath.read_text())]
    docs = [c for p in sorted((EVAL / "docqa_dev" / "docs").glob("*.md")) for c in chunk_doc(p.name, p.read_text())]
    spec = embedding_spec(settings, for_query=False)
    indexer = Embedder(spec)
    baseline = _fastembed_model(spec)
    variants = {"fastembed defaults": lambda texts: list(baseline.embed(texts, batch_size=32)),
                "indexer (Embedder)": indexer.embed}
    for kind, chunks in (("code", code[:sample]), ("docs", docs[:sample])):
        texts = [t for c in chunks for t in embed_texts(kind, c, settings.embedding)]
        tokens = sum(count_tokens(c.text) for c in chunks)
        runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for _ in range(2):
            for name, embed in variants.items():
                t0, c0 = time.perf_counter(), time.process_time()
                embed(texts)
                runs[name].append((time.perf_counter() - t0, time.process_time() - c0))
        print(f"cold embedding, {kind}: {len(chunks)} chunks, {len(texts)} windows, {tokens} text tokens "
              f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        ref_wall = min(w for w, _ in runs["fastembed defaults"])
        ref_cpu = min(c for _, c in runs["fastembed defaults"])
        for name, values in runs.items():
            wall, cpu = min(w for w, _ in values), min(c for _, c in values)
            print(f"  {name:<20} {len(chunks) / wall:7.1f} chunks/s {tokens / wall:8.0f} tokens/s  "
                  f"{len(chunks) / cpu:7.1f} chunks/CPU-s  wall x{ref_wall / wall:.2f}  CPU x{ref_cpu / cpu:.2f}")


def query_embedding_cost(settings, rounds: int = 5) -> None:
    """A query embedding's wall and CPU (tokenizing the message included, as in the gateway) on the policy's
    graph against the float graph it is quantized from (one and two ONNX threads), interleaved round by round
    over the bench's messages, and the cosine of each query's vector to the float graph's (what the index holds)."""
    from dataclasses import replace

    texts = [t for ts in messages().values() for t in ts]
    policy = embedding_spec(settings)
    variants = {"float graph, 2 threads": replace(policy, int8=False, run_threads=2),
                "float graph, 1 thread": replace(policy, int8=False, run_threads=1),
                f"policy (int8 {policy.int8}, {policy.run_threads} thr)": policy}
    models = {name: Embedder(spec, fast=True) for name, spec in variants.items()}
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(rounds):
        for name, model in models.items():
            for text in texts:
                w, c = time.perf_counter(), time.process_time()
                model.embed([text])
                runs[name].append(((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000))
    floats = models["float graph, 1 thread"].embed(texts)
    cosine = (models[list(variants)[-1]].embed(texts) * floats).sum(1)
    print(f"query embedding, {len(texts)} messages x {rounds} rounds, cut to {policy.max_tokens} tokens "
          f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores); policy's cosine to the float graph: "
          f"min {cosine.min():.4f}, mean {cosine.mean():.4f}")
    base = pct([c for _, c in runs["float graph, 2 threads"]], 50)
    for name, values in runs.items():
        cpu = [c for _, c in values]
        print(f"  {name:<32} wall p50 {pct([w for w, _ in values], 50):6.2f} ms  CPU p50 {pct(cpu, 50):6.2f} ms  "
              f"p95 {pct(cpu, 95):6.2f} ms  CPU p50 x{pct(cpu, 50) / base:.2f}")


def cli_query_wall(repeats: int = 3) -> None:
    """`rag-indexer query` wall and CPU time (fresh process each), and what the model load costs with and
    without fastembed in a fresh process (the baseline the lazy path is compared against)."""
    import resource
    import subprocess

    def run(argv: list[str]) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter() - t0, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    py = sys.executable
    load = ("from rag_indexer.embedding import Embedder; from rag_indexer.quick_settings import embedding_spec; "
            "from rag_indexer.settings import load_settings; Embedder(embedding_spec(load_settings()), fast={}).embed(['q'])")
    rows = {
        "rag-indexer query": [py, "-m", "rag_indexer.cli", "query", "how do I set the routing alpha", "--collection",
                              "bench-docqa"],
        "model load, fast path": [py, "-c", load.format(True)],
        "model load, fastembed": [py, "-c", load.format(False)],
        "python -c pass": [py, "-c", "pass"],
    }
    print(f"CLI (best of {repeats}, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    for label, argv in rows.items():
        runs = [run(argv) for _ in range(repeats)]
        print(f"  {label:<24} {min(w for w, _ in runs):.2f} s wall  {min(c for _, c in runs):.2f} s CPU")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-chunks", type=int, default=10_000)
    ap.add_argument("--reindex-files", type=int, default=1_000, help="repo size for the one-file re-index")
    ap.add_argument("--speed-only", action="store_true",
                    help="only query embedding cost (int8 vs float graph), cold embedding throughput (indexer vs "
                         "fastembed) and CLI wall (on the bench-docqa index)")
    ap.add_argument("--sample", type=int, default=200, help="chunks per kind for the throughput runs")
    args = ap.parse_args()
    settings = load_settings()
    if args.speed_only:
        query_embedding_cost(settings)
        embedding_throughput(settings, args.sample)
        cli_query_wall()
        return 0
    store = Store(store_url(settings))
    embedder = Embedder(embedding_spec(settings), fast=True)  # query side, as in the gateway
    index_embedder = Embedder(embedding_spec(settings, for_query=False))
    retriever = Retriever(store, embedder, settings.retrieval)
    repo = build_repo("latency_repo", lambda _, chunks: chunks >= args.min_chunks)
    rep = index_tree(store, index_embedder, settings.embedding, "code", repo, NAME, commit="bench")
    info = store.index("code", NAME)
    print(f"index: {info.chunks} chunks from {rep.files} files ({rep.chunks_written} written in {rep.seconds:.1f}s)")
    inc = reindex_one_file(store, index_embedder, settings, args.reindex_files)
    print(f"re-index after a one-file change: {inc.seconds:.2f}s ({inc.indexed} file re-indexed of {inc.files})")

    sets = messages()
    k = settings.retrieval.top_k
    clock = StageClock(retriever)
    for text in sets["questions (short)"][:5] + sets["issues (long)"][:5]:  # warm-up
        retriever.search(Query("code", NAME, text, k))
    base = []
    for _ in range(50):
        w = time.perf_counter()
        store.conn.execute("SELECT 1").fetchone()
        base.append((time.perf_counter() - w) * 1000)
    print(f"{info.chunks} chunks, model {embedder.model_id}, query_max_tokens {settings.embedding.query_max_tokens}, "
          f"loadavg {os.getloadavg()[0]:.1f}; SELECT 1 round trip p50 {pct(base, 50):.2f} ms")
    results: dict = {}
    for name, texts in sets.items():
        rounds = []
        for _ in range(args.rounds):
            samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
            cpu0 = server_cpu_ms(store)
            for text in texts:
                for stage, v in clock.search(retriever, Query("code", NAME, text, k)).items():
                    samples[stage].append(v)
            pg_cpu = (server_cpu_ms(store) - cpu0) / len(texts)
            rounds.append(({s: {"wall_p50": pct([v[0] for v in vs], 50), "wall_p95": pct([v[0] for v in vs], 95),
                                "cpu_p50": pct([v[1] for v in vs], 50), "cpu_p95": pct([v[1] for v in vs], 95)}
                            for s, vs in samples.items()}, pg_cpu))
        med = {s: {m: round(statistics.median(r[0][s][m] for r in rounds), 2) for m in rounds[0][0][s]} for s in rounds[0][0]}
        pg = round(statistics.median(r[1] for r in rounds), 2)
        totals = [round(r[0]["TOTAL embedding + search"]["wall_p95"], 1) for r in rounds]
        results[name] = {"stages": med, "postgres_cpu_ms_per_query": pg, "total_wall_p95_per_round": totals}
        print(f"\n{name}: {len(texts)} messages x {args.rounds} rounds (medians of per-round p50/p95, ms)")
        print(f"  {'stage':<28} {'wall p50':>9} {'wall p95':>9} {'cpu p50':>8} {'cpu p95':>8}")
        for s, m in med.items():
            print(f"  {s:<28} {m['wall_p50']:9.2f} {m['wall_p95']:9.2f} {m['cpu_p50']:8.2f} {m['cpu_p95']:8.2f}")
        verdict = "met" if med["TOTAL embedding + search"]["wall_p95"] <= TARGET_MS else "NOT met"
        print(f"  Postgres CPU per query (mean): {pg:.2f} ms; total wall p95 per round: {totals}; "
              f"target p95 <= {TARGET_MS:.0f} ms: {verdict}")
    out = {"chunks": info.chunks, "files": rep.files, "model": embedder.model_id, "rounds": args.rounds,
           "reindex_one_file_s": round(inc.seconds, 2), "select1_p50_ms": round(pct(base, 50), 3), "sets": results}
    (state_dir() / "bench" / "rag_latency.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
