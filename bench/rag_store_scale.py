"""The store with many indexes: what one more index costs the others' writes and searches.

In a fresh database on the project's Postgres + pgvector, an index of --chunks random window vectors is
written, then small indexes (5 chunks each) are added until the store holds each count of --indexes; at
each count a 40-chunk file of the big index is replaced (the indexer's per-file write) and its dense search
is run, best of --repeat. Printed per count: ms and the ratio against the first count.

    .venv/bin/python bench/rag_store_scale.py [--indexes 1,50,300] [--chunks 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rag_indexer.chunk import Chunk
from rag_indexer.store import Store
from tests import services

DIM, MODEL = 384, "bench-model"


def write(store: Store, name: str, path: str, vectors: np.ndarray) -> float:
    """Replace one file of index `name` with chunks holding `vectors`; seconds taken."""
    info = store.ensure_index("code", name, MODEL, DIM)
    chunks = [Chunk(path=path, start_line=i + 1, end_line=i + 1, text=f"def f{i}(): pass") for i in range(len(vectors))]
    return timed(lambda: store.replace_file(info, path, "blob", chunks, [c.text for c in chunks],
                                            [[v] for v in vectors]))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(repeat: int, seconds) -> float:
    """The fastest of `repeat` calls of `seconds` (which returns seconds taken), in ms."""
    return min(seconds() for _ in range(repeat)) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--indexes", default="1,50,300", help="comma-separated index counts, ascending")
    ap.add_argument("--chunks", type=int, default=10_000, help="chunks of the index measured")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    counts = [int(c) for c in args.indexes.split(",")]
    rng = np.random.default_rng(0)
    with services.fresh_database("rag_scale", services.pgvector_url()) as url:
        store = Store(url)
        write(store, "big", "big.py", rng.normal(size=(args.chunks, DIM)))
        store.finish_run(store.index("code", "big"), None)
        file_vectors, query = rng.normal(size=(40, DIM)), rng.normal(size=(1, DIM))
        rows = []
        for count in counts:
            while (have := store.conn.execute("SELECT count(*) FROM rag_indexes").fetchone()[0]) < count:
                write(store, f"small-{have}", "a.py", rng.normal(size=(5, DIM)))
            info = store.index("code", "big")
            replace = best(args.repeat, lambda: write(store, "big", "file.py", file_vectors))
            search = best(args.repeat, lambda i=info: timed(lambda: store.dense(i, query, 100)))
            rows.append((count, replace, search))
        store.close()
    print(f"{'indexes':>8} {'replace 40-chunk file':>22} {'ratio':>6} {'dense search':>13} {'ratio':>6}")
    for count, replace, search in rows:
        print(f"{count:>8} {replace:>19.1f} ms {replace / rows[0][1]:>5.2f}x {search:>10.2f} ms "
              f"{search / rows[0][2]:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
