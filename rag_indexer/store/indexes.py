"""Index records: create, look up, drop, refresh statistics after a run, VACUUM after bulk changes."""

from __future__ import annotations

from .base import Connection, IndexInfo, check_model
from .schema import per_dim_schema, vec_table

# After bulk writes, searches are ~10x slower until VACUUM (dead HNSW entries, no visibility map for
# index-only scans): 33 ms vs 2.4 ms per HNSW search at 11k chunks. Autovacuum may come much later.
VACUUM_AFTER_CHANGES = 1000


class Indexes(Connection):
    def index(self, kind: str, name: str) -> IndexInfo | None:
        row = self.conn.execute(
            "SELECT id, kind, name, commit, model, dim, chunks, avgdl, coalesce((SELECT reltuples FROM pg_class "
            "WHERE oid = to_regclass('rag_vectors_' || dim)), 0) FROM rag_indexes WHERE kind = %s AND name = %s",
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
        self.schema_ddl("true", per_dim_schema(dim))  # under the schema lock: indexers may start at once
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
            for table in (vec_table(dim), "rag_postings", "rag_chunks"):
                self.conn.execute(f"VACUUM (ANALYZE) {table}")
            self._changed = 0

    def file_blobs(self, index_id: int) -> dict[str, str]:
        rows = self.conn.execute("SELECT path, blob FROM rag_files WHERE index_id = %s", (index_id,)).fetchall()
        return dict(rows)

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
