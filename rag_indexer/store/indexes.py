"""Index records: create (with their vector partition; a store made before partitions is moved first), look up,
drop, refresh statistics after a run, VACUUM after bulk changes."""

from __future__ import annotations

import random
import time

from .base import Connection, IndexInfo, check_model, log
from .schema import (
    VECTOR_INDEXES,
    partition_schema,
    per_dim_relations,
    per_dim_schema,
    vec_partition,
    vec_table,
    vector_indexes_sql,
    vector_table_sql,
)

# After bulk writes, searches are ~10x slower until VACUUM (dead HNSW entries, no visibility map for
# index-only scans): 33 ms vs 2.4 ms per HNSW search at 11k chunks. Autovacuum may come much later.
VACUUM_AFTER_CHANGES = 1000
# moving a store made before partitions ends by swapping the tables under locks on rag_chunks and the old
# vector table: each try waits this long for them, all tries together at most SWAP_WAIT_S
SWAP_LOCK_WAIT_MS, SWAP_WAIT_S = 200, 60.0
MOVE_LOCK_WAIT_S = 3600.0  # other indexers (and drops) wait this long for a move (minutes on a large store)


class _SwapRefused(Exception):
    """The move into partitions could not take the locks for its swap in time."""


def _relkind_is(table: str, kind: str) -> str:
    """SQL: whether `table` is a plain table (`r`: a store made before partitions) or a partitioned one (`p`)."""
    return f"EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('{table}') AND relkind = '{kind}')"


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
        table, part = vec_table(dim), vec_partition(dim, info.id)
        if self.conn.execute(f"SELECT {_relkind_is(table, 'r')}").fetchone()[0]:
            self._move_into_partitions(dim)
        # under the schema lock (indexers may start at once), and only what is missing: DDL on the parent
        # locks every partition
        missing = " OR ".join(f"to_regclass('{n}') IS NULL" for n in per_dim_relations(dim))
        self.schema_ddl(missing, per_dim_schema(dim))
        self.schema_ddl(f"to_regclass('{part}') IS NULL AND {_relkind_is(table, 'p')}", partition_schema(dim, info.id))
        return self.index(kind, name)  # type: ignore[return-value]

    def _move_into_partitions(self, dim: int) -> None:
        """Move a store made before partitions (every index's vectors in one table and one HNSW graph) into one
        partition per index, once, in one transaction that other indexers wait for. The copy and its graphs are
        made beside the old table, which serves searches meanwhile; then the two are swapped under locks on
        rag_chunks and the old table (see `_swap_in`). When the swap cannot get them, nothing changes and the
        store is searched and written as before until the next indexer run tries again. Each partition takes
        about 9 entries of the server's lock table: a store of more than ~2,000 indexes needs a larger
        `max_locks_per_transaction` for this."""
        table, new = vec_table(dim), f"{vec_table(dim)}_parts"
        try:
            with self.schema_locked(_relkind_is(table, "r"), MOVE_LOCK_WAIT_S) as needed:
                if not needed:  # another indexer moved it while this one waited
                    return
                log.warning("moving %s into one partition per index (once; other indexers wait for it)", table)
                self.conn.execute(vector_table_sql(new, dim))
                for (index_id,) in self.conn.execute("SELECT id FROM rag_indexes WHERE dim = %s", (dim,)).fetchall():
                    self.conn.execute(partition_schema(dim, index_id, new))
                self.conn.execute(f"INSERT INTO {new} SELECT chunk_id, index_id, embedding FROM {table}")
                self.conn.execute(vector_indexes_sql(new))  # after the copy: each graph built in one go
                self._swap_in(table, new)
        except _SwapRefused as e:
            log.warning("%s: %s stays as it was (searched and written as before); the next indexer run tries "
                        "again", e, table)

    def _swap_in(self, table: str, new: str) -> None:
        """Replace `table` by `new` under locks on rag_chunks (the old table's foreign key lives there) and
        `table`. Searches take those two in either order, so a try that holds one and waits for the other gives
        up after SWAP_LOCK_WAIT_MS (a savepoint) and backs off before the next, so that its queued lock request
        does not stall searches either; all tries together at most SWAP_WAIT_S."""
        import psycopg

        deadline, pause = time.monotonic() + SWAP_WAIT_S, 0.2
        while True:
            try:
                with self.conn.transaction():
                    self.conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT_MS}ms'")
                    self.conn.execute(f"LOCK TABLE rag_chunks, {table} IN ACCESS EXCLUSIVE MODE")
                    self.conn.execute(f"DROP TABLE {table}")
                    self.conn.execute(f"ALTER TABLE {new} RENAME TO {table}")
                    for suffix in VECTOR_INDEXES:
                        self.conn.execute(f"ALTER INDEX {new}_{suffix} RENAME TO {table}_{suffix}")
                return
            except psycopg.errors.LockNotAvailable:
                if time.monotonic() + pause > deadline:
                    raise _SwapRefused(f"other sessions (searches, autovacuum, a dump) held rag_chunks or {table} "
                                       f"for {SWAP_WAIT_S:.0f} s") from None
                time.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(2.0, pause * 2)

    def drop_index(self, kind: str, name: str) -> bool:
        info = self.index(kind, name)
        if info is None:
            return False
        # under the schema lock: a move into partitions copies every index's vectors, a drop waits for it
        with self.schema_locked("true", MOVE_LOCK_WAIT_S):
            self._changed += self.conn.execute("DELETE FROM rag_chunks WHERE index_id = %s", (info.id,)).rowcount
            self.conn.execute("DELETE FROM rag_indexes WHERE id = %s", (info.id,))
            # last: dropping a partition locks the parent, which every indexer's writes need
            self.conn.execute(f"DROP TABLE IF EXISTS {vec_partition(info.dim, info.id)}")
        self._vacuum_if_needed()
        return True

    def _vacuum_if_needed(self, info: IndexInfo | None = None) -> None:
        """VACUUM the tables (and `info`'s vectors) after many chunks were written or deleted (a dropped
        index's partition went whole)."""
        if self._changed >= VACUUM_AFTER_CHANGES:
            for table in ([info.vectors] if info else []) + ["rag_postings", "rag_chunks"]:
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
