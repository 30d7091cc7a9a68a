"""Dense search: nearest embedding windows by HNSW, best window per chunk."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Connection, IndexInfo, path_filter, vector_literal
from .reads import ChunkMeta
from .schema import vec_table


class Dense(Connection):
    def dense(self, info: IndexInfo, query_vecs: np.ndarray, limit: int,
              paths: Sequence[str] = ()) -> list[tuple[int, float, ChunkMeta]]:
        """(chunk_id, best window cosine, the chunk's metadata) for the windows nearest to any of the query
        vectors, best first, one round trip."""
        path_sql, params = path_filter(paths)
        self._set_ef_search(max(40, min(1000, int(limit))))  # pgvector returns at most ef_search rows
        rows = self.conn.execute(
            f"WITH n AS (SELECT n.chunk_id, max(n.sim) AS sim FROM unnest(%(qs)s::text[]::vector[]) AS q(vec) "
            f"CROSS JOIN LATERAL (SELECT v.chunk_id, 1 - (v.embedding <=> q.vec) AS sim FROM {vec_table(info.dim)} v "
            f"{'JOIN rag_chunks c ON c.id = v.chunk_id' if path_sql else ''} "
            f"WHERE v.index_id = %(idx)s {path_sql} ORDER BY v.embedding <=> q.vec LIMIT %(lim)s) n "
            f"GROUP BY n.chunk_id) "
            f"SELECT n.chunk_id, n.sim, c.path, c.file_kind, c.package FROM n JOIN rag_chunks c ON c.id = n.chunk_id "
            f"ORDER BY n.sim DESC",
            {"qs": [vector_literal(v) for v in np.atleast_2d(query_vecs)], "idx": info.id, "lim": limit, **params},
        ).fetchall()
        return [(r[0], float(r[1]), ChunkMeta(*r[2:])) for r in rows]

    def _set_ef_search(self, ef: int) -> None:
        """HNSW candidate list size for this session; a SET only when it changes (saves a round trip per query)."""
        if self._ef_search != ef:
            self.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            self._ef_search = ef
