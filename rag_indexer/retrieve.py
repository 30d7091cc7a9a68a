"""Hybrid retrieval: dense windows + BM25 over Postgres full-text (+ code signals, symbols and path
mentions), fused by weighted RRF; code files ranked by their chunks together."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .embedding import Embedder
from .query import Shaped, head, shape
from .settings import RetrievalSettings
from .store import Hit, IndexInfo, Store, check_model, rrf
from .text import search_text, windows

MODES = ("hybrid", "dense", "fulltext")


@dataclass(frozen=True)
class Query:
    """What to search: an index (kind + name) and optional commit / path filters."""

    kind: str
    name: str
    text: str
    k: int = 3
    commit: str | None = None
    paths: tuple[str, ...] = ()
    mode: str = "hybrid"


def file_order(rankings: list[list[int]], weights: list[float], k: int, fused: dict[int, float],
               path_of: dict[int, str]) -> list[int]:
    """Chunk ids ordered file by file: files fused by RRF over each ranking's file order (a file ranks
    where its best chunk does), then the best chunk of each file in that order, then the second, ..."""
    file_rankings = [list(dict.fromkeys(path_of[c] for c in ranking)) for ranking in rankings]
    file_score = rrf(file_rankings, k, weights)
    by_file: dict[str, list[int]] = {}
    for cid in sorted(fused, key=lambda c: -fused[c]):
        by_file.setdefault(path_of[cid], []).append(cid)
    files = sorted(by_file, key=lambda p: -file_score.get(p, 0.0))
    depth = max((len(ids) for ids in by_file.values()), default=0)
    return [by_file[p][i] for i in range(depth) for p in files if i < len(by_file[p])]


class Retriever:
    """Searches one store with one warm embedder."""

    def __init__(self, store: Store, embedder: Embedder, cfg: RetrievalSettings):
        self.store, self.embedder, self.cfg = store, embedder, cfg
        self._embed_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-embed")

    def index_for(self, q: Query) -> IndexInfo | None:
        info = self.store.index(q.kind, q.name)
        if info is not None:
            check_model(info, self.embedder.model_id, self.embedder.dim)
        return info

    def dense_windows(self, s: Shaped) -> list[str]:
        """What of the message gets embedded: its prose, at most `max_query_windows` model windows."""
        size = self.cfg.query_window_words
        return windows(s.prose, size, size // 4)[: self.cfg.max_query_windows] or [head(s.text, size)]

    def search(self, q: Query) -> list[Hit]:
        """Top `q.k` relevant chunks (possibly fewer, or none)."""
        if q.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {q.mode!r}")
        info = self.index_for(q)
        if info is None or info.chunks == 0:
            return []
        if q.commit and info.commit and not info.commit.startswith(q.commit):
            return []  # the index holds another commit of this repo
        cfg, cand = self.cfg, self.cfg.candidates
        w = cfg.weights.code if q.kind == "code" else cfg.weights.docs
        rankings: list[list[int]] = []
        weights: list[float] = []
        dense: dict[int, float] = {}
        bm25: dict[int, float] = {}
        lexical: set[int] = set()  # chunks matched by a mentioned symbol
        max_df = cfg.max_term_df.get(q.kind, 1.0)
        s = shape(q.text)
        embedding = None  # the query embedding (client CPU) runs while Postgres does the lexical searches
        if q.mode in ("hybrid", "dense"):
            embedding = self._embed_pool.submit(self.embedder.embed, self.dense_windows(s))
        if q.mode in ("hybrid", "fulltext"):
            bm25 = dict(self.store.bm25(info, search_text(s.text), cand, cfg.max_query_terms, q.paths, max_df))
            rankings.append(list(bm25))
            weights.append(w.fulltext)
        if q.mode == "hybrid" and w.code_terms and s.signals:
            code = self.store.bm25(info, search_text(" ".join(s.signals)), cand, cfg.max_query_terms, q.paths, max_df)
            rankings.append([cid for cid, _ in code])
            weights.append(w.code_terms)
        if q.mode == "hybrid" and w.symbol:
            symbols = self.store.symbols(info, s.symbols, s.dotted, cand, q.paths)
            if symbols:  # qualified matches (`Expression.compile`) first, then by full-text score
                rankings.append([cid for cid, _ in sorted(symbols, key=lambda s: (-s[1], -bm25.get(s[0], 0.0)))])
                weights.append(w.symbol)
                lexical.update(cid for cid, _ in symbols)
        if embedding is not None:
            dense = dict(self.store.dense(info, embedding.result(), cand, q.paths))
            rankings.append(list(dense))
            weights.append(w.dense)
        if q.paths and not any(rankings):  # referenced files that match nothing: their first chunks
            rankings.append(self.store.file_chunk_ids(info, q.paths, q.k))
            weights.append(1.0)
        pool = set().union(*rankings) if rankings else set()
        path_of = self.store.chunk_paths(pool)
        if q.mode == "hybrid" and w.path:
            mentioned = set(self.store.paths_matching(info, s.paths))
            if mentioned:
                fused_so_far = rrf(rankings, cfg.rrf_k, weights)
                rankings.append([c for c in sorted(fused_so_far, key=lambda c: -fused_so_far[c]) if path_of[c] in mentioned])
                weights.append(w.path)
        fused = rrf(rankings, cfg.rrf_k, weights)
        if q.mode == "hybrid" and q.kind in cfg.fuse_files:
            order = file_order(rankings, weights, cfg.rrf_k, fused, path_of)
        else:
            order = sorted(fused, key=lambda c: -fused[c])
        picked = []
        for cid in order:
            d, b = dense.get(cid), bm25.get(cid)
            relevant = (
                bool(q.paths)  # explicitly referenced files are relevant
                or cid in lexical
                or (d is not None and d >= cfg.min_dense_similarity)
                or (b is not None and b >= cfg.min_fulltext_score)
            )
            if relevant:
                picked.append(cid)
                if len(picked) >= q.k:
                    break
        chunks = self.store.chunks(picked)
        return [Hit(chunks[c], c, info.name, info.commit, fused[c], dense.get(c), bm25.get(c)) for c in picked]


def as_dict(hit: Hit) -> dict:
    """JSON-ready view of a hit (CLI `--json`, benchmarks)."""
    c = hit.chunk
    return {
        "index": hit.index, "commit": hit.commit, "path": c.path, "start_line": c.start_line, "end_line": c.end_line,
        "cite": c.cite, "symbol": c.symbol, "heading": c.heading, "language": c.language,
        "score": round(hit.rrf, 6), "dense": None if hit.dense is None else round(hit.dense, 4),
        "fulltext": None if hit.bm25 is None else round(hit.bm25, 4), "text": c.text,
    }
