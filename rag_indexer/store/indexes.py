"""Index records: create, look up, drop, refresh statistics after a run, VACUUM after bulk changes."""

from __future__ import annotations

from .base import Connection, IndexInfo, check_model, log
from .schema import partition_schema, per_dim_schema, vec_partition, vec_table

# After bulk writes, searches are ~10x slower until VACUUM (dead HNSW entries, no visibility map for
# index-only scans): 33 ms vs 2.4 ms per HNSW search at 11k chunks. Autovacuum may come much later.
VACUUM_AFTER_CHANGES = 1000


class Indexes(Connection):
    def index(self, kind: str, name: str) -> IndexInfo | None:
        """The index record, with the relation its vectors are in (its partition; in a store made before
        partitions, the shared table) and that relation's row estimate."""
        row = self.conn.execute(
            "SELECT i.id, i.kind, i.name, i.commit, i.model, i.dim, i.chunks, i.avgdl, coalesce(reltuples, 0), "
            "coalesce(i.rel::text, '') FROM (SELECT *, coalesce(to_regclass('rag_vectors_' || dim || '_i' || id), "
            "to_regclass('rag_vectors_' || dim)) AS rel FROM rag_indexes WHERE kind = %s AND name = %s) i "
            "LEFT JOIN pg_class ON pg_class.oid = i.rel",
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
        if self.conn.execute("SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass(%s) AND relkind = 'r')",
                             (vec_table(dim),)).fetchone()[0]:
            log.warning("moving %s into one partition per index (once; searches wait for it)", info.vectors)
        # under the schema lock: indexers may start at once
        self.schema_ddl("true", per_dim_schema(dim), partition_schema(dim, info.id))
        return self.index(kind, name)  # type: ignore[return-value]

    def drop_index(self, kind: str, name: str) -> bool:
        info = self.index(kind, name)
        if info is None:
            return False
        with self.conn.transaction():
            self.conn.execute(f"DROP TABLE IF EXISTS {vec_partition(info.dim, info.id)}")
            self._changed += self.conn.execute("DELETE FROM rag_chunks WHERE index_id = %s", (info.id,)).rowcount
            self.conn.execute("DELETE FROM rag_indexes WHERE id = %s", (info.id,))
        self._vacuum_if_needed()
        return True

    def _vacuum_if_needed(self, info: IndexInfo | None = None) -> None:
        """VACUUM the tables (and `info`'s vectors) after many chunks were written or deleted (a dropped
        index's partition went whole; a store made before partitions is left to autovacuum)."""
        if self._changed >= VACUUM_AFTER_CHANGES:
            for table in ([info.vectors] if info and info.vectors else []) + ["rag_postings", "rag_chunks"]:
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
        self._vacuum_if_needed(info)
        return self.index(info.kind, info.name)  # type: ignore[return-value]
