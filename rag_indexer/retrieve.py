"""Hybrid retrieval: dense windows + BM25 over Postgres full-text (+ symbol and path mentions), fused by RRF."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .embedding import Embedder
from .settings import RetrievalSettings
from .store import Hit, IndexInfo, Store, check_model, rrf
from .text import search_text, windows

MODES = ("hybrid", "dense", "fulltext")
_PATH_MENTION = re.compile(r"(?<![\w.-])/?((?:[\w.-]+/)*[\w-]+\.(?:py|pyi|js|jsx|ts|tsx|go|java|rs|rb|c|h|cpp|md|rst))\b")
_SYMBOL_MENTION = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\b")


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


def path_mentions(text: str) -> list[str]:
    """File paths mentioned in the text (`src/_pytest/logging.py`, `logging.py`)."""
    return list(dict.fromkeys(m.lstrip("./") for m in _PATH_MENTION.findall(text)))


def symbol_mentions(text: str) -> list[str]:
    """Identifiers that look like code symbols: snake_case, camelCase, dotted, or called `name(`."""
    out = []
    for m in _SYMBOL_MENTION.finditer(text):
        name = m.group(1)
        called = text[m.end() : m.end() + 1] == "("
        for part in name.split("."):
            if len(part) >= 4 and ("_" in part.strip("_") or re.search(r"[a-z][A-Z]", part) or called or "." in name):
                out.append(part)
    return list(dict.fromkeys(out))[:64]


def dotted_mentions(text: str) -> list[str]:
    """Qualified names mentioned in the text (`Expression.compile`, `caplog.get_records`)."""
    return list(dict.fromkeys(m for m in _SYMBOL_MENTION.findall(text) if "." in m and not _PATH_MENTION.fullmatch(m)))[:32]


class Retriever:
    """Searches one store with one warm embedder."""

    def __init__(self, store: Store, embedder: Embedder, cfg: RetrievalSettings):
        self.store, self.embedder, self.cfg = store, embedder, cfg

    def index_for(self, q: Query) -> IndexInfo | None:
        info = self.store.index(q.kind, q.name)
        if info is not None:
            check_model(info, self.embedder.model_id, self.embedder.dim)
        return info

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
        rankings: list[list[int]] = []
        weights: list[float] = []
        dense: dict[int, float] = {}
        bm25: dict[int, float] = {}
        lexical: set[int] = set()  # chunks matched by a mentioned symbol
        if q.mode in ("hybrid", "dense"):
            wins = windows(q.text, cfg.query_window_words, cfg.query_window_words // 4)[: cfg.max_query_windows]
            vecs = self.embedder.embed(wins or [q.text])
            per_window = [self.store.dense(info, v, cand, q.paths) for v in vecs]
            for ranking in per_window:
                for cid, sim in ranking:
                    dense[cid] = max(dense.get(cid, -1.0), sim)
            rankings.append(sorted(dense, key=lambda c: -dense[c])[:cand])
            weights.append(cfg.weights.dense)
        if q.mode in ("hybrid", "fulltext"):
            bm25 = dict(self.store.bm25(info, search_text(q.text), cand, cfg.max_query_terms, q.paths,
                                        cfg.max_term_df.get(q.kind, 1.0)))
            rankings.append(list(bm25))
            weights.append(cfg.weights.fulltext)
        if q.mode == "hybrid" and q.kind == "code":
            symbols = self.store.symbols(info, symbol_mentions(q.text), dotted_mentions(q.text), cand, q.paths)
            if symbols:  # qualified matches (`Expression.compile`) first, then by full-text score
                rankings.append([cid for cid, _ in sorted(symbols, key=lambda s: (-s[1], -bm25.get(s[0], 0.0)))])
                weights.append(cfg.weights.symbol)
                lexical.update(cid for cid, _ in symbols)
        if q.paths and not any(rankings):  # referenced files that match nothing: their first chunks
            rankings.append(self.store.file_chunk_ids(info, q.paths, q.k))
            weights.append(1.0)
        pool = set().union(*rankings) if rankings else set()
        chunks = self.store.chunks(pool)
        if q.mode == "hybrid":
            mentioned = set(self.store.paths_matching(info, path_mentions(q.text)))
            if mentioned:
                fused_so_far = rrf(rankings, cfg.rrf_k, weights)
                rankings.append([c for c in sorted(fused_so_far, key=lambda c: -fused_so_far[c]) if chunks[c].path in mentioned])
                weights.append(cfg.weights.path)
        fused = rrf(rankings, cfg.rrf_k, weights)
        order = sorted(fused, key=lambda c: -fused[c])
        hits = []
        for cid in order:
            d, b = dense.get(cid), bm25.get(cid)
            relevant = (
                bool(q.paths)  # explicitly referenced files are relevant
                or cid in lexical
                or (d is not None and d >= cfg.min_dense_similarity)
                or (b is not None and b >= cfg.min_fulltext_score)
            )
            if not relevant:
                continue
            hits.append(Hit(chunks[cid], cid, info.name, info.commit, fused[cid], d, b))
            if len(hits) >= q.k:
                break
        return hits


def as_dict(hit: Hit) -> dict:
    """JSON-ready view of a hit (CLI `--json`, benchmarks)."""
    c = hit.chunk
    return {
        "index": hit.index, "commit": hit.commit, "path": c.path, "start_line": c.start_line, "end_line": c.end_line,
        "cite": c.cite, "symbol": c.symbol, "heading": c.heading, "language": c.language,
        "score": round(hit.rrf, 6), "dense": None if hit.dense is None else round(hit.dense, 4),
        "fulltext": None if hit.bm25 is None else round(hit.bm25, 4), "text": c.text,
    }

