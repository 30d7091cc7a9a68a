"""The connection every store part shares, the index record, and SQL helpers."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..chunk import Chunk
from .schema import (
    SCHEMA,
    SCHEMA_LOCK,
    SCHEMA_VERSION,
    TRIGRAM_FALLBACK_SCHEMA,
    TRIGRAM_SCHEMA,
    vec_table,
)

log = logging.getLogger("rag_indexer.store")
SCHEMA_LOCK_WAIT_S = 30.0  # a connection waits this long for another one's schema DDL
# SQL: whether a trigram index on rag_terms exists (keyed by index, or the fallback over every index's terms)
_TRIGRAM_INDEX_THERE = "coalesce(to_regclass('rag_terms_trgm_by_index'), to_regclass('rag_terms_trgm')) IS NOT NULL"


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
    table_vectors: float = 0.0  # rows of the relation its vectors are in (planner estimate)
    vectors: str = ""  # that relation: its partition (a store made before partitions: the shared table)

    def __post_init__(self):
        if not self.vectors:  # no vector table yet (or a record made by hand): the one of its size
            object.__setattr__(self, "vectors", vec_table(self.dim))


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


@dataclass(frozen=True)
class Read:
    """One read, to be sent alone or with others (`Connection.read`); no `sql`: nothing to ask, no rows."""

    sql: str | None
    params: object
    convert: Callable[[list[tuple]], object]


class Connection:
    """One autocommit psycopg connection to the RAG database, schema ensured."""

    def __init__(self, url: str, connect_timeout: float = 3.0):
        import psycopg
        from pgvector.psycopg.vector import register_vector_info
        from psycopg import sql
        from psycopg.types import TypeInfo

        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(connect_timeout)))
            # one round trip (no parameters: both statements go as one simple query): the schema version, the
            # vector type, and filtered HNSW scans that keep going until `limit` rows pass (pgvector >= 0.8)
            version, trigram_index, vector_oid, vector_array = self.conn.execute(
                "SELECT obj_description(to_regclass('rag_indexes'), 'pg_class'), "
                f"{_TRIGRAM_INDEX_THERE}, to_regtype('vector')::oid, "
                "(SELECT typarray FROM pg_type WHERE oid = to_regtype('vector')); "
                "SET hnsw.iterative_scan = relaxed_order").fetchone()
            if version != SCHEMA_VERSION:  # DDL only when the schema changed: it takes table locks
                self.schema_ddl(sql.SQL("obj_description(to_regclass('rag_indexes'), 'pg_class') IS DISTINCT FROM {}")
                                .format(SCHEMA_VERSION),
                                SCHEMA, sql.SQL("COMMENT ON TABLE rag_indexes IS {}").format(SCHEMA_VERSION))
            # numpy arrays bind as `vector` (pgvector's register_vector also looks up types this store never uses)
            register_vector_info(self.conn, TypeInfo("vector", vector_oid, vector_array) if vector_oid
                                 else TypeInfo.fetch(self.conn, "vector"))
        except psycopg.errors.LockNotAvailable:
            raise StoreError(f"vector store busy: another connection held its schema lock for {SCHEMA_LOCK_WAIT_S:.0f} s "
                             f"({_redact(url)})") from None
        except psycopg.OperationalError as e:
            raise StoreError(f"vector store unreachable ({_redact(url)}): {str(e).strip().splitlines()[0]}") from None
        self.trigrams = bool(trigram_index) and version == SCHEMA_VERSION
        if not self.trigrams:
            self.trigrams = self._ensure_trigrams()
        self._ef_search: int | None = None
        self._pipeline = psycopg.Pipeline.is_supported()  # libpq >= 14 (the binary wheel bundles one)
        self._changed = 0  # chunks deleted or written since this connection's last VACUUM

    def _ensure_trigrams(self) -> bool:
        """Create the trigram index (keyed by index where btree_gin is installed; under the schema lock, as the
        schema); whether one is there after."""
        import psycopg

        btree_gin = self.conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gin')")
        schema = TRIGRAM_SCHEMA if btree_gin.fetchone()[0] else TRIGRAM_FALLBACK_SCHEMA
        if schema is TRIGRAM_FALLBACK_SCHEMA:
            log.warning("btree_gin unavailable: typo lookups search every index's terms")
        try:
            self.schema_ddl(f"NOT ({_TRIGRAM_INDEX_THERE})", schema)
            return True
        except psycopg.Error as e:  # a server without contrib modules (or the rights)
            found = self.conn.execute(f"SELECT {_TRIGRAM_INDEX_THERE}").fetchone()[0]
            if not found:
                log.warning("pg_trgm unavailable, no typo-tolerant matching: %s", str(e).strip().splitlines()[0])
            return bool(found)

    def schema_ddl(self, still_needed, *statements) -> None:
        """`statements` in one transaction holding the schema lock, unless `still_needed` (an SQL boolean) says
        another connection did them while this one waited (search processes, replicas and indexers opening a new
        store at once: concurrent CREATE ... IF NOT EXISTS of one object fails on a catalog index, and each
        repeat takes table locks again)."""
        with self.schema_locked(still_needed) as needed:
            if needed:
                for statement in statements:
                    self.conn.execute(statement)

    @contextlib.contextmanager
    def schema_locked(self, still_needed, wait_s: float = SCHEMA_LOCK_WAIT_S) -> Iterator[bool]:
        """A transaction holding the schema lock (waits at most `wait_s` for it: a StoreError after), and
        whether `still_needed` (an SQL boolean) is true once it is held."""
        import psycopg
        from psycopg import sql

        with self.conn.transaction():
            self.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(f"{wait_s:.0f}s"))
            try:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            except psycopg.errors.LockNotAvailable:
                raise StoreError(f"vector store busy: another connection held its schema lock for {wait_s:.0f} s "
                                 "(an indexer moving vectors into partitions takes minutes on a large store); "
                                 "try again") from None
            yield bool(self.conn.execute(sql.SQL("SELECT {}").format(
                sql.SQL(still_needed) if isinstance(still_needed, str) else still_needed)).fetchone()[0])

    def read(self, *reads: Read) -> list:
        """Each read's converted rows; several go out together and are answered in one round trip (libpq
        pipeline mode, else one after another): on a busy machine every round trip waits for the scheduler."""
        asked = [r for r in reads if r.sql]
        if len(asked) > 1 and self._pipeline:
            with self.conn.pipeline():
                cursors = [self.conn.execute(r.sql, r.params) for r in asked]
        else:
            cursors = [self.conn.execute(r.sql, r.params) for r in asked]
        rows = dict(zip(map(id, asked), (c.fetchall() for c in cursors), strict=True))
        return [r.convert(rows.get(id(r), [])) for r in reads]

    def close(self) -> None:
        self.conn.close()


def check_model(info: IndexInfo, model: str, dim: int) -> None:
    """A query or update with a different embedding model than the index was built with is an error."""
    if info.model != model or info.dim != dim:
        raise StoreError(
            f"{info.kind} index {info.name!r} was built with embedding model {info.model!r} (dim {info.dim}) "
            f"but the configured model is {model!r} (dim {dim}); use the same model or re-index with --reset"
        )


def vector_literal(vec: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vec, dtype=np.float32).tolist()) + "]"


def path_filter(paths: Sequence[str]) -> tuple[str, dict]:
    """SQL (on alias `c`) keeping chunks in the given files or folders, and its parameters."""
    if not paths:
        return "", {}
    sql = (
        "AND EXISTS (SELECT 1 FROM unnest(%(paths)s::text[]) fp "
        "WHERE c.path = fp OR starts_with(c.path, rtrim(fp, '/') || '/'))"
    )
    return sql, {"paths": [p.strip("/") for p in paths]}


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
