"""Hybrid retrieval: dense windows + BM25 over Postgres full-text (+ typo corrections, code signals,
symbols and path mentions), fused by weighted RRF; code files ranked by their chunks together, file
kinds in policy order, near-duplicate documents spread out."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .embedding import Embedder
from .fusion import (
    by_tier,
    diversify,
    file_order,
    from_first_answering,
    long_files_discounted,
    rrf,
)
from .query import Shaped, clean, head, prose_of, shape
from .store import ChunkMeta, Hit, IndexInfo, Read, Store, check_model
from .text import search_text, windows

if TYPE_CHECKING:  # a CLI query runs on the settings' snapshot, without pydantic
    from .settings import RetrievalSettings

MODES = ("hybrid", "dense", "fulltext")
_COMMIT = re.compile(r"[0-9a-fA-F]{4,40}")
_NOTHING = Read(None, None, lambda rows: [])
# typo candidates: words as prose spells them (`disconected`, `Instal`, `INSTALATION`, `air-gaped`, `instalación`);
# identifiers (`gateway_error`, `GatewayError`, `x2y`, `model.valid`'s attribute) are names, not misspellings
_LETTER_RUN = re.compile(r"(?<![\w.])[^\W\d_]+(?!\w)")
_TEST_PATH = re.compile(r"(?:^|/)(?:tests?|testing)/|(?:^|/)(?:test_[^/]*|[^/]*_test\.\w+|conftest\.py)$")


class NotIndexed(LookupError):
    """The query names an index that does not exist, or that holds another commit; the message says which."""


@dataclass(frozen=True)
class Query:
    """What to search: an index (kind + name), optional commit / path filters, whether it is about tests
    (None: decided from the text by the policy's pattern and the test files it names)."""

    kind: str
    name: str
    text: str
    k: int = 3
    commit: str | None = None
    paths: tuple[str, ...] = ()
    mode: str = "hybrid"
    about_tests: bool | None = None


def commit_matches(indexed: str | None, ref: str | None) -> bool:
    """A commit SHA (4-40 hex digits) must be the indexed one; `HEAD`, a branch or no ref mean the newest."""
    if not ref or not indexed or not _COMMIT.fullmatch(ref):
        return True
    return indexed.lower().startswith(ref.lower())


def typo_candidates(text: str) -> str:
    """The words of `text` a misspelling can hide in: prose words (one case, or capitalised), each once."""
    words = (w for w in _LETTER_RUN.findall(text) if w.islower() or w.isupper() or w[1:].islower())
    return " ".join(dict.fromkeys(words))


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

    def dense_windows(self, cleaned: str) -> list[str]:
        """What of the (cleaned) message gets embedded: its prose, at most `max_query_windows` model windows."""
        size = self.cfg.query_window_words
        return windows(prose_of(cleaned), size, size // 4)[: self.cfg.max_query_windows] or [head(cleaned, size)]

    def _kind_tier(self, q: Query, s: Shaped, meta: dict[int, ChunkMeta], mentioned: set[str]):
        """Tier of a chunk by its file kind (code indexes): None leaves it out."""
        fk = self.cfg.file_kinds
        about_tests = q.about_tests
        if about_tests is None:
            # a test file of this repository named (a reporter's own `test_x.py` is not one of them)
            about_tests = bool(re.search(fk.tests_pattern, s.text)) or any(_TEST_PATH.search(p) for p in mentioned)
        tiers = fk.tests_tiers if about_tests else fk.tiers
        words = {w.lower() for w in re.findall(r"[\w.-]+", s.text)}

        def tier(cid: int) -> int | None:
            m = meta[cid]
            t = tiers[m.kind]
            if m.path in mentioned or any(m.path == p or m.path.startswith(p.rstrip("/") + "/") for p in q.paths):
                return 0  # a file the question names or references is always in
            if t == "named":
                return 0 if m.package and m.package.lower() in words else None
            return None if t == "off" else t

        return tier

    def search(self, q: Query) -> list[Hit]:
        """Top `q.k` chunks once one of them is relevant (fewer only when the index has fewer), else none;
        `NotIndexed` when there is no such index or it holds another commit."""
        if q.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {q.mode!r}")
        # the query embedding (client CPU, the longest stage) starts once the index is found and runs while
        # the message is taken apart and Postgres does the lexical searches, the path lookup and the
        # candidates' metadata
        cleaned = clean(q.text)
        info = self.index_for(q)
        option = "--repo" if q.kind == "code" else "--collection"
        if info is None:
            raise NotIndexed(f"no {q.kind} index named {q.name!r}; index it with `rag-indexer {q.kind} PATH "
                             f"{option} {q.name}`")
        if not commit_matches(info.commit, q.commit):
            raise NotIndexed(f"the {q.kind} index {q.name!r} holds commit {(info.commit or '?')[:12]}, not {q.commit}; "
                             f"index that commit with `rag-indexer {q.kind} PATH {option} {q.name} --ref {q.commit}`")
        if info.chunks == 0:
            return []
        embedding = None
        if q.mode in ("hybrid", "dense"):
            embedding = self._embed_pool.submit(self.embedder.embed, self.dense_windows(cleaned))
        cfg, cand = self.cfg, self.cfg.candidates
        w = cfg.weights.code if q.kind == "code" else cfg.weights.docs
        rankings: list[list[int]] = []
        weights: list[float] = []
        dense: dict[int, float] = {}
        bm25: dict[int, float] = {}
        lexical: set[int] = set()  # chunks matched by a mentioned symbol
        max_df = cfg.max_term_df.get(q.kind, 1.0)
        s = shape(q.text, cleaned)
        fulltext = q.mode in ("hybrid", "fulltext")
        code_terms = q.mode == "hybrid" and bool(w.code_terms and s.signals)
        symbol = q.mode == "hybrid" and bool(w.symbol)
        terms = search_text(s.text) if fulltext else ""
        typo_similarity = cfg.typo_similarity.get(q.kind, 0.0)  # 0: off (code), no candidates to pick out
        fixes = self.store.typo_corrections(info, typo_candidates(s.text), typo_similarity) \
            if fulltext and typo_similarity > 0 else []
        # the lexical searches and the path lookup go out together: one round trip
        found_bm25, found_code, symbols, mentioned_paths = self.store.read(
            self.store.bm25_read(info, terms, cand, cfg.max_query_terms, q.paths, max_df, fixes) if fulltext else _NOTHING,
            self.store.bm25_read(info, search_text(" ".join(s.signals)), cand, cfg.max_query_terms, q.paths, max_df)
            if code_terms else _NOTHING,
            self.store.symbols_read(info, s.symbols, s.dotted, cand, q.paths) if symbol else _NOTHING,
            self.store.paths_matching_read(info, s.paths) if q.mode == "hybrid" else _NOTHING,
        )
        if fulltext:
            bm25 = dict(found_bm25)
            rankings.append(list(bm25))
            weights.append(w.fulltext)
        if code_terms:
            rankings.append([cid for cid, _ in found_code])
            weights.append(w.code_terms)
        if symbols:  # qualified matches (`Expression.compile`) first, then by full-text score
            rankings.append([cid for cid, _ in sorted(symbols, key=lambda s: (-s[1], -bm25.get(s[0], 0.0)))])
            weights.append(w.symbol)
            lexical.update(cid for cid, _ in symbols)
        mentioned = set(mentioned_paths)
        lexical_pool = set().union(*rankings) if rankings else set()
        meta = self.store.chunk_meta(lexical_pool) if lexical_pool else {}
        if embedding is not None:
            found = self.store.dense(info, embedding.result(), cand, q.paths)  # with the chunks' metadata
            dense = {cid: sim for cid, sim, _ in found}
            meta.update((cid, m) for cid, _, m in found)
            rankings.append(list(dense))
            weights.append(w.dense)
        if q.paths and not any(rankings):  # referenced files that match nothing: their first chunks
            rankings.append(self.store.file_chunk_ids(info, q.paths, q.k))
            weights.append(1.0)
        pool = set().union(*rankings) if rankings else set()
        if pool - meta.keys():
            meta.update(self.store.chunk_meta(pool - meta.keys()))
        path_of = {c: m.path for c, m in meta.items()}
        if mentioned and w.path:
            fused_so_far = rrf(rankings, cfg.rrf_k, weights)
            rankings.append([c for c in sorted(fused_so_far, key=lambda c: -fused_so_far[c]) if path_of[c] in mentioned])
            weights.append(w.path)
        if q.mode == "hybrid" and w.phrase and s.phrases and pool:  # the leading candidates quoting the message
            fused_so_far = rrf(rankings, cfg.rrf_k, weights)
            counts = self.store.phrase_counts(sorted(pool, key=lambda c: -fused_so_far[c])[: cfg.phrase_candidates],
                                              s.phrases)
            rankings.append(sorted(counts, key=lambda c: (-counts[c], -fused_so_far[c])))
            weights.append(w.phrase)
        fused = rrf(rankings, cfg.rrf_k, weights)
        if q.kind == "docs" and cfg.long_doc_discount and fused:  # code ranks whole files: see file_order
            chunks_in = self.store.file_chunk_counts(info, {path_of[c] for c in fused})
            fused = long_files_discounted(fused, path_of, chunks_in, cfg.long_doc_discount)
        if q.mode == "hybrid" and q.kind in cfg.fuse_files:
            order = file_order(rankings, weights, cfg.rrf_k, fused, path_of)
        else:
            order = sorted(fused, key=lambda c: -fused[c])
        groups = by_tier(order, self._kind_tier(q, s, meta, mentioned)) if q.kind == "code" else [order]
        order = from_first_answering(groups, lambda c: self._relevant(q, c, dense, bm25, lexical))
        return self._picked(q, info, order, fused, dense, bm25) if order else []

    def _relevant(self, q: Query, cid: int, dense: dict[int, float], bm25: dict[int, float], lexical: set[int]) -> bool:
        """Whether a chunk answers at all: below both floors it has nothing on the question."""
        d, b = dense.get(cid), bm25.get(cid)
        return (
            bool(q.paths)  # explicitly referenced files are relevant
            or cid in lexical
            or (d is not None and d >= self.cfg.min_dense_similarity)
            or (b is not None and b >= self.cfg.min_fulltext_score)
        )

    def _picked(self, q: Query, info: IndexInfo, order: list[int], fused: dict[int, float],
                dense: dict[int, float], bm25: dict[int, float]) -> list[Hit]:
        """The first `q.k` of `order` as hits: passages that share a parent section become that section
        once, near-copies go behind the rest."""
        threshold = self.cfg.diversify_similarity.get(q.kind, 1.0)
        window = order[: max(q.k * 4, q.k + 8)] if threshold < 1.0 or q.kind == "docs" else order[: q.k]
        chunks = self.store.chunks(window)
        taken: list[tuple[str, int, int]] = []
        unique = []
        for cid in window:  # a passage whose section is (inside) one already taken adds nothing
            c = chunks[cid].enclosing()
            if c is chunks[cid] or not any(p == c.path and s <= c.start_line and c.end_line <= e for p, s, e in taken):
                taken.append((c.path, c.start_line, c.end_line))
                unique.append(cid)
        picked = diversify(unique, lambda c: chunks[c].enclosing().text, q.k, threshold)
        return [Hit(chunks[c].enclosing(), c, info.name, info.commit, fused[c], dense.get(c), bm25.get(c))
                for c in picked]


def as_dict(hit: Hit) -> dict:
    """JSON-ready view of a hit (CLI `--json`, benchmarks)."""
    c = hit.chunk
    return {
        "index": hit.index, "commit": hit.commit, "path": c.path, "start_line": c.start_line, "end_line": c.end_line,
        "cite": c.cite, "kind": c.kind, "symbol": c.symbol, "heading": c.heading, "language": c.language,
        "score": round(hit.rrf, 6), "dense": None if hit.dense is None else round(hit.dense, 4),
        "fulltext": None if hit.bm25 is None else round(hit.bm25, 4), "text": c.text,
    }
