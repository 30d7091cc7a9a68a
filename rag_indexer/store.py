"""pgvector + Postgres full-text store: chunks, window vectors, BM25 postings, per-file hashes.

psycopg + pgvector directly rather than llama-index's PGVectorStore: we need per-chunk
window vectors, BM25 (Postgres' ts_rank has no IDF) and a few-ms query path, none of which
its node/hybrid API offers. All values go in as bound parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .chunk import Chunk

K1, B = 1.2, 0.75
# After bulk writes, searches are ~10x slower until VACUUM (dead HNSW entries, no visibility map for
# index-only scans): 33 ms vs 2.4 ms per HNSW search at 11k chunks. Autovacuum may come much later.
VACUUM_AFTER_CHANGES = 1000
MIN_DF_CUTOFF = 200  # common-term pruning only where postings are long; small indexes keep every term
TS_CONFIG = "english"

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS rag_indexes (
    id serial PRIMARY KEY, kind text NOT NULL, name text NOT NULL, commit text,
    model text NOT NULL, dim int NOT NULL, chunks int NOT NULL DEFAULT 0, avgdl real NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (kind, name));
CREATE TABLE IF NOT EXISTS rag_files (
    index_id int NOT NULL REFERENCES rag_indexes ON DELETE CASCADE, path text NOT NULL, blob text NOT NULL,
    PRIMARY KEY (index_id, path));
CREATE TABLE IF NOT EXISTS rag_chunks (
    id bigserial PRIMARY KEY, index_id int NOT NULL REFERENCES rag_indexes ON DELETE CASCADE,
    path text NOT NULL, language text NOT NULL, symbol text NOT NULL, heading text NOT NULL,
    start_line int NOT NULL, end_line int NOT NULL, content text NOT NULL, doclen int NOT NULL);
CREATE INDEX IF NOT EXISTS rag_chunks_file ON rag_chunks (index_id, path);
-- symbol_key: the symbol's last dotted part, lower-cased (`Foo.Bar` -> `bar`), derived by Postgres;
-- an older plain column of that name (filled by the indexer) is replaced once
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'rag_chunks'
                   AND column_name = 'symbol_key' AND is_generated = 'ALWAYS') THEN
        ALTER TABLE rag_chunks DROP COLUMN IF EXISTS symbol_key;
        ALTER TABLE rag_chunks ADD COLUMN symbol_key text
            GENERATED ALWAYS AS (lower(regexp_replace(symbol, '^.*\\.', ''))) STORED;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS rag_chunks_symbol ON rag_chunks (index_id, symbol_key);
CREATE TABLE IF NOT EXISTS rag_postings (
    index_id int NOT NULL, lexeme text NOT NULL, chunk_id bigint NOT NULL REFERENCES rag_chunks ON DELETE CASCADE,
    tf int NOT NULL, doclen int NOT NULL, PRIMARY KEY (index_id, lexeme, chunk_id));
CREATE INDEX IF NOT EXISTS rag_postings_chunk ON rag_postings (chunk_id);
-- BM25 reads postings by (index, lexeme): index-only scans, no heap visits (3x faster on long queries)
CREATE INDEX IF NOT EXISTS rag_postings_cover ON rag_postings (index_id, lexeme) INCLUDE (chunk_id, tf, doclen);
CREATE TABLE IF NOT EXISTS rag_terms (
    index_id int NOT NULL REFERENCES rag_indexes ON DELETE CASCADE, lexeme text NOT NULL, df int NOT NULL,
    PRIMARY KEY (index_id, lexeme));
"""


class StoreError(RuntimeError):
    """The store cannot be reached or does not match the request; the message says which."""


@dataclass(frozen=True)
class IndexInfo:
    id: int
    kind: str
    name: str
    commit: str | None
    model: str
    dim: int
    chunks: int
    avgdl: float


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its component scores (rrf is the fused one)."""

    chunk: Chunk
    chunk_id: int
    index: str
    commit: str | None
    rrf: float = 0.0
    dense: float | None = None
    bm25: float | None = None


def _vec_table(dim: int) -> str:
    return f"rag_vectors_{int(dim)}"


class Store:
    """One psycopg connection to the RAG database."""

    def __init__(self, url: str, connect_timeout: float = 3.0):
        import psycopg
        from pgvector.psycopg import register_vector

        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout)))
            self.conn.execute(SCHEMA)
            register_vector(self.conn)
            # filtered HNSW scans keep going until `limit` rows pass the filter (pgvector >= 0.8)
            self.conn.execute("SET hnsw.iterative_scan = relaxed_order")
            self._ef_search: int | None = None
            self._changed = 0  # chunks deleted or written since this connection's last VACUUM
        except psycopg.OperationalError as e:
            raise StoreError(f"vector store unreachable ({_redact(url)}): {str(e).strip().splitlines()[0]}") from None

    def close(self) -> None:
        self.conn.close()

    # ---- indexes -------------------------------------------------------------------------
    def index(self, kind: str, name: str) -> IndexInfo | None:
        row = self.conn.execute(
            "SELECT id, kind, name, commit, model, dim, chunks, avgdl FROM rag_indexes WHERE kind = %s AND name = %s",
            (kind, name),
        ).fetchone()
        return IndexInfo(*row) if row else None

    def ensure_index(self, kind: str, name: str, model: str, dim: int) -> IndexInfo:
        """The index row for (kind, name), created for `model`; a different model is a clear error."""
        info = self.index(kind, name)
        if info is None:
            self.conn.execute(
                "INSERT INTO rag_indexes (kind, name, model, dim) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (kind, name, model, dim),
            )
            info = self.index(kind, name)
        assert info is not None
        check_model(info, model, dim)
        table = _vec_table(dim)
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (chunk_id bigint NOT NULL REFERENCES rag_chunks ON DELETE CASCADE, "
            f"index_id int NOT NULL, embedding vector({int(dim)}) NOT NULL);"
            f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops);"
            f"CREATE INDEX IF NOT EXISTS {table}_chunk ON {table} (chunk_id);"
            f"CREATE TABLE IF NOT EXISTS rag_embed_cache_{int(dim)} (model text NOT NULL, h bytea NOT NULL, "
            f"embedding vector({int(dim)}) NOT NULL, PRIMARY KEY (model, h));"
        )
        return info

    def drop_index(self, kind: str, name: str) -> bool:
        info = self.index(kind, name)
        if info is None:
            return False
        with self.conn.transaction():
            self._changed += self.conn.execute("DELETE FROM rag_chunks WHERE index_id = %s", (info.id,)).rowcount
            self.conn.execute("DELETE FROM rag_indexes WHERE id = %s", (info.id,))
        self._vacuum_if_needed(info.dim)
        return True

    def _vacuum_if_needed(self, dim: int) -> None:
        """VACUUM the tables after many chunks were written or deleted."""
        if self._changed >= VACUUM_AFTER_CHANGES:
            for table in (_vec_table(dim), "rag_postings", "rag_chunks"):
                self.conn.execute(f"VACUUM (ANALYZE) {table}")
            self._changed = 0

    def file_blobs(self, index_id: int) -> dict[str, str]:
        rows = self.conn.execute("SELECT path, blob FROM rag_files WHERE index_id = %s", (index_id,)).fetchall()
        return dict(rows)

    # ---- embedding cache (text hash → vector, per model) -----------------------------------
    def cached_vectors(self, model: str, dim: int, texts: Sequence[str]) -> dict[str, np.ndarray]:
        by_hash = {_digest(t): t for t in texts}
        rows = self.conn.execute(
            f"SELECT h, embedding FROM rag_embed_cache_{int(dim)} WHERE model = %s AND h = ANY(%s)",
            (model, list(by_hash)),
        ).fetchall()
        return {by_hash[bytes(h)]: np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32) for h, v in rows}

    def cache_vectors(self, model: str, dim: int, vectors: dict[str, np.ndarray]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO rag_embed_cache_{int(dim)} (model, h, embedding) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(model, _digest(t), np.asarray(v, dtype=np.float32)) for t, v in vectors.items()],
            )

    # ---- writes --------------------------------------------------------------------------
    def delete_files(self, info: IndexInfo, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self.conn.transaction():
            self._changed += self.conn.execute(
                "DELETE FROM rag_chunks WHERE index_id = %s AND path = ANY(%s)", (info.id, list(paths))).rowcount
            self.conn.execute("DELETE FROM rag_files WHERE index_id = %s AND path = ANY(%s)", (info.id, list(paths)))

    def replace_file(
        self, info: IndexInfo, path: str, blob: str, chunks: Sequence[Chunk], terms: Sequence[str],
        vectors: Sequence[np.ndarray],
    ) -> None:
        """Atomically replace one file's chunks; `terms[i]` is chunk i's search text, `vectors[i]` its windows."""
        table = _vec_table(info.dim)
        with self.conn.transaction():
            self._changed += self.conn.execute(
                "DELETE FROM rag_chunks WHERE index_id = %s AND path = %s", (info.id, path)).rowcount
            self._changed += len(chunks)
            for chunk, term_text, vecs in zip(chunks, terms, vectors, strict=True):
                chunk_id = self.conn.execute(
                    "INSERT INTO rag_chunks (index_id, path, language, symbol, heading, start_line, end_line, "
                    "content, doclen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (info.id, path, chunk.language, chunk.symbol, chunk.heading,
                     chunk.start_line, chunk.end_line, chunk.text, max(1, len(term_text.split()))),
                ).fetchone()[0]
                self.conn.execute(
                    "INSERT INTO rag_postings (index_id, lexeme, chunk_id, tf, doclen) "
                    "SELECT %s, lexeme, %s, coalesce(array_length(positions, 1), 1), %s "
                    f"FROM unnest(to_tsvector('{TS_CONFIG}', %s))",
                    (info.id, chunk_id, max(1, len(term_text.split())), term_text),
                )
                with self.conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {table} (chunk_id, index_id, embedding) VALUES (%s, %s, %s)",
                        [(chunk_id, info.id, v) for v in vecs],
                    )
            self.conn.execute(
                "INSERT INTO rag_files (index_id, path, blob) VALUES (%s, %s, %s) "
                "ON CONFLICT (index_id, path) DO UPDATE SET blob = EXCLUDED.blob",
                (info.id, path, blob),
            )

    def finish_run(self, info: IndexInfo, commit: str | None) -> IndexInfo:
        """Refresh document frequencies and index stats after a run; record the commit."""
        with self.conn.transaction():
            self.conn.execute("DELETE FROM rag_terms WHERE index_id = %s", (info.id,))
            self.conn.execute(
                "INSERT INTO rag_terms (index_id, lexeme, df) SELECT index_id, lexeme, count(*) FROM rag_postings "
                "WHERE index_id = %s GROUP BY index_id, lexeme",
                (info.id,),
            )
            self.conn.execute(
                "UPDATE rag_indexes SET commit = %s, updated_at = now(), "
                "chunks = (SELECT count(*) FROM rag_chunks WHERE index_id = %s), "
                "avgdl = coalesce((SELECT avg(doclen) FROM rag_chunks WHERE index_id = %s), 1) WHERE id = %s",
                (commit, info.id, info.id, info.id),
            )
        self.conn.execute("ANALYZE rag_postings")
        self._vacuum_if_needed(info.dim)
        return self.index(info.kind, info.name)  # type: ignore[return-value]

    # ---- reads ---------------------------------------------------------------------------
    def dense(self, info: IndexInfo, query_vecs: np.ndarray, limit: int, paths: Sequence[str] = ()) -> list[tuple[int, float]]:
        """(chunk_id, best window cosine) for the windows nearest to any of the query vectors (HNSW), one round trip."""
        table = _vec_table(info.dim)
        path_sql, params = _path_filter(paths)
        self._set_ef_search(max(40, min(1000, int(limit) * 2)))
        rows = self.conn.execute(
            f"SELECT n.chunk_id, max(n.sim) AS sim FROM unnest(%(qs)s::text[]::vector[]) AS q(vec) "
            f"CROSS JOIN LATERAL (SELECT v.chunk_id, 1 - (v.embedding <=> q.vec) AS sim FROM {table} v "
            f"{'JOIN rag_chunks c ON c.id = v.chunk_id' if path_sql else ''} "
            f"WHERE v.index_id = %(idx)s {path_sql} ORDER BY v.embedding <=> q.vec LIMIT %(lim)s) n "
            f"GROUP BY n.chunk_id ORDER BY sim DESC",
            {"qs": [_vector_literal(v) for v in np.atleast_2d(query_vecs)], "idx": info.id, "lim": limit, **params},
        ).fetchall()
        return [(cid, float(sim)) for cid, sim in rows]

    def _set_ef_search(self, ef: int) -> None:
        """HNSW candidate list size for this session; a SET only when it changes (saves a round trip per query)."""
        if self._ef_search != ef:
            self.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            self._ef_search = ef

    def bm25(self, info: IndexInfo, query_terms: str, limit: int, max_terms: int = 48,
             paths: Sequence[str] = (), max_df_ratio: float = 1.0) -> list[tuple[int, float]]:
        """(chunk_id, BM25 score) over Postgres full-text lexemes: the rarest `max_terms` query terms,
        leaving out terms in more than `max_df_ratio` of the chunks (long postings, little weight).
        All arithmetic in float8: numeric `ln` made this query several times slower."""
        path_sql, params = _path_filter(paths)
        rows = self.conn.execute(
            f"""
            WITH qt AS (
                SELECT lexeme, coalesce(array_length(positions, 1), 1) AS qtf
                FROM unnest(to_tsvector('{TS_CONFIG}', %(text)s))),
            q AS (
                SELECT t.lexeme, ln(1 + (%(n)s - t.df + 0.5) / (t.df + 0.5)) * (1 + ln(qt.qtf::float8)) AS w
                FROM qt JOIN rag_terms t ON t.index_id = %(idx)s AND t.lexeme = qt.lexeme
                WHERE t.df <= %(maxdf)s ORDER BY t.df ASC LIMIT %(maxterms)s)
            SELECT p.chunk_id, sum(q.w * p.tf * {K1 + 1} / (p.tf + {K1} * (1 - {B} + {B} * p.doclen::float8 / %(avgdl)s))) AS s
            FROM q JOIN rag_postings p ON p.index_id = %(idx)s AND p.lexeme = q.lexeme
            {'JOIN rag_chunks c ON c.id = p.chunk_id WHERE true ' + path_sql if path_sql else ''}
            GROUP BY p.chunk_id ORDER BY s DESC LIMIT %(lim)s
            """,
            {"text": query_terms, "n": float(max(1, info.chunks)), "idx": info.id, "avgdl": max(1.0, info.avgdl),
             "maxterms": max_terms, "maxdf": max(MIN_DF_CUTOFF, int(max_df_ratio * info.chunks)), "lim": limit, **params},
        ).fetchall()
        return [(cid, float(s)) for cid, s in rows]

    def symbols(self, info: IndexInfo, names: Sequence[str], dotted: Sequence[str], limit: int,
                paths: Sequence[str] = ()) -> list[tuple[int, bool]]:
        """(chunk id, qualified) for chunks whose symbol's last part is one of `names` or ends one of the
        `dotted` names; qualified = the symbol ends with the whole dotted name. Case-insensitive."""
        if not names and not dotted:
            return []
        path_sql, params = _path_filter(paths)
        rows = self.conn.execute(
            "SELECT c.id, EXISTS (SELECT 1 FROM unnest(%(dotted)s::text[]) d WHERE lower(c.symbol) = d "
            "OR right(lower(c.symbol), length(d) + 1) = '.' || d) AS qualified "
            "FROM rag_chunks c WHERE c.index_id = %(idx)s AND c.symbol_key = ANY(%(keys)s) "
            f"{path_sql} ORDER BY qualified DESC, c.id LIMIT %(lim)s",
            {"idx": info.id, "keys": list({n.rsplit(".", 1)[-1].lower() for n in (*names, *dotted)}),
             "dotted": [d.lower() for d in dotted],
             "lim": limit, **params},
        ).fetchall()
        return [(r[0], bool(r[1])) for r in rows]

    def paths_matching(self, info: IndexInfo, suffixes: Sequence[str]) -> list[str]:
        """Indexed file paths that end with, or are the tail of, a path mentioned in a query. A bare file
        name that several files share (`__init__.py`, `utils.py`) names none of them."""
        if not suffixes:
            return []
        rows = self.conn.execute(
            "SELECT s, f.path FROM rag_files f JOIN unnest(%s::text[]) s ON f.path = s "
            "OR right(f.path, length(s) + 1) = '/' || s OR right(s, length(f.path) + 1) = '/' || f.path "
            "WHERE f.index_id = %s",
            (list(suffixes), info.id),
        ).fetchall()
        per_mention: dict[str, list[str]] = {}
        for mention, path in rows:
            per_mention.setdefault(mention, []).append(path)
        return list(dict.fromkeys(p for m, ps in per_mention.items() if "/" in m or len(ps) == 1 for p in ps))

    def chunk_paths(self, ids: Iterable[int]) -> dict[int, str]:
        rows = self.conn.execute("SELECT id, path FROM rag_chunks WHERE id = ANY(%s)", (list(ids),)).fetchall()
        return dict(rows)

    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        rows = self.conn.execute(
            "SELECT id, path, start_line, end_line, content, language, symbol, heading FROM rag_chunks WHERE id = ANY(%s)",
            (list(ids),),
        ).fetchall()
        return {r[0]: Chunk(*r[1:]) for r in rows}

    def file_chunk_ids(self, info: IndexInfo, paths: Sequence[str], limit: int) -> list[int]:
        """First chunks of the given files/folders (for explicitly referenced paths that match nothing)."""
        path_sql, params = _path_filter(paths)
        rows = self.conn.execute(
            f"SELECT c.id FROM rag_chunks c WHERE c.index_id = %(idx)s {path_sql} ORDER BY c.path, c.start_line LIMIT %(lim)s",
            {"idx": info.id, "lim": limit, **params},
        ).fetchall()
        return [r[0] for r in rows]


def check_model(info: IndexInfo, model: str, dim: int) -> None:
    """A query or update with a different embedding model than the index was built with is an error."""
    if info.model != model or info.dim != dim:
        raise StoreError(
            f"{info.kind} index {info.name!r} was built with embedding model {info.model!r} (dim {info.dim}) "
            f"but the configured model is {model!r} (dim {dim}); use the same model or re-index with --reset"
        )


def _vector_literal(vec: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vec, dtype=np.float32).tolist()) + "]"


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _path_filter(paths: Sequence[str]) -> tuple[str, dict]:
    if not paths:
        return "", {}
    sql = (
        "AND EXISTS (SELECT 1 FROM unnest(%(paths)s::text[]) fp "
        "WHERE c.path = fp OR starts_with(c.path, rtrim(fp, '/') || '/'))"
    )
    return sql, {"paths": [p.strip("/") for p in paths]}


def _redact(url: str) -> str:
    import re

    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal-rank fusion of ranked id lists."""
    fused: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, cid in enumerate(ranking):
            fused[cid] = fused.get(cid, 0.0) + w / (k + rank + 1)
    return fused


