"""Dense search: nearest embedding windows (by HNSW, or exactly for a small index), best window per chunk."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Connection, IndexInfo, path_filter, vector_literal
from .reads import ChunkMeta
from .schema import vec_table

# An index whose vectors are a small share of the table searched is searched exactly: the filtered HNSW scan
# visits about limit x table / index rows before `limit` of its own pass (up to 20,000: ~150 ms on a 200k-vector
# table for a 100-vector collection), an exact scan visits the index's own. Exact when chunks^2 <= limit x table
# rows, for at most EXACT_MAX_CHUNKS chunks (one window per chunk by default: 2,000 distances; a policy with
# 10 windows per doc chunk: 20k, a few ms). In its own partition (schema.per_dim_schema) that is an index of at
# most `limit` chunks; the shared table of a store made before partitions, until an indexer run moves it.
EXACT_MAX_CHUNKS = 2000


class Dense(Connection):
    def dense(self, info: IndexInfo, query_vecs: np.ndarray, limit: int,
              paths: Sequence[str] = ()) -> list[tuple[int, float, ChunkMeta]]:
        """(chunk_id, best window cosine, the chunk's metadata) for the windows nearest to any of the query
        vectors, best first, one round trip: by HNSW, or exactly for a small index in a large table."""
        from psycopg.errors import UndefinedTable

        if not exact_search(info, limit):
            self._set_ef_search(max(40, min(1000, int(limit))))  # pgvector returns at most ef_search rows
        try:
            rows = self.conn.execute(*self.dense_sql(info, query_vecs, limit, paths)).fetchall()
        except UndefinedTable:  # the index was dropped (its partition with it) since `info` was read
            return []
        return [(r[0], float(r[1]), ChunkMeta(*r[2:])) for r in rows]

    @staticmethod
    def dense_sql(info: IndexInfo, query_vecs: np.ndarray, limit: int, paths: Sequence[str] = ()) -> tuple[str, dict]:
        """The dense search's statement and parameters."""
        path_sql, params = path_filter(paths)
        table = info.vectors
        if exact_search(info, limit):
            # ordered by similarity, which no index serves (`ORDER BY embedding <=> vec` would hand it back to
            # the HNSW scan)
            windows = (f"rag_chunks c JOIN {table} v ON v.chunk_id = c.id WHERE c.index_id = %(idx)s {path_sql} "
                       f"ORDER BY sim DESC")
        else:
            # in its own partition no filter on the index: one would make the planner guess that few rows pass
            # (a partition never analysed yet) and sort them all instead of walking the HNSW graph
            own = "true" if table != vec_table(info.dim) else "v.index_id = %(idx)s"
            windows = (f"{table} v {'JOIN rag_chunks c ON c.id = v.chunk_id' if path_sql else ''} "
                       f"WHERE {own} {path_sql} ORDER BY v.embedding <=> q.vec")
        # per query vector its `limit` nearest windows, then each chunk's best
        nearest = (f"SELECT n.chunk_id, max(n.sim) AS sim FROM unnest(%(qs)s::text[]::vector[]) AS q(vec) "
                   f"CROSS JOIN LATERAL (SELECT v.chunk_id, 1 - (v.embedding <=> q.vec) AS sim FROM {windows} "
                   f"LIMIT %(lim)s) n GROUP BY n.chunk_id")
        sql = (f"WITH n AS ({nearest}) SELECT n.chunk_id, n.sim, c.path, c.file_kind, c.package "
               f"FROM n JOIN rag_chunks c ON c.id = n.chunk_id ORDER BY n.sim DESC")
        return sql, {"qs": [vector_literal(v) for v in np.atleast_2d(query_vecs)], "idx": info.id, "lim": limit, **params}

    def _set_ef_search(self, ef: int) -> None:
        """HNSW candidate list size for this session; a SET only when it changes (saves a round trip per query)."""
        if self._ef_search != ef:
            self.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            self._ef_search = ef


def exact_search(info: IndexInfo, limit: int) -> bool:
    """Whether `info`'s dense search is cheaper exact than by the shared HNSW index (see EXACT_MAX_CHUNKS)."""
    return info.chunks <= EXACT_MAX_CHUNKS and info.chunks ** 2 <= limit * max(info.table_vectors, info.chunks)
