"""Reads by chunk id: metadata for ranking, whole chunks for the answer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..chunk import Chunk
from .base import Connection, IndexInfo, path_filter


@dataclass(frozen=True)
class ChunkMeta:
    path: str
    kind: str
    package: str


class Reads(Connection):
    def chunk_meta(self, ids: Iterable[int]) -> dict[int, ChunkMeta]:
        rows = self.conn.execute(
            "SELECT id, path, file_kind, package FROM rag_chunks WHERE id = ANY(%s)", (list(ids),)).fetchall()
        return {r[0]: ChunkMeta(*r[1:]) for r in rows}

    def file_chunk_counts(self, info: IndexInfo, paths: Iterable[str]) -> dict[str, int]:
        """How many chunks each of these files has in the index."""
        rows = self.conn.execute("SELECT path, count(*) FROM rag_chunks WHERE index_id = %s AND path = ANY(%s) "
                                 "GROUP BY path", (info.id, list(paths))).fetchall()
        return dict(rows)

    def phrase_counts(self, ids: Iterable[int], phrases: Sequence[str]) -> dict[int, int]:
        """How many of the (lower-case) phrases each of these chunks contains literally (chunks with none left out)."""
        rows = self.conn.execute(
            "WITH c AS MATERIALIZED (SELECT id, lower(content) AS t FROM rag_chunks WHERE id = ANY(%s)) "
            "SELECT c.id, count(*) FROM c JOIN unnest(%s::text[]) p ON strpos(c.t, p) > 0 GROUP BY c.id",
            (list(ids), list(phrases))).fetchall()
        return {r[0]: r[1] for r in rows}

    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        rows = self.conn.execute(
            "SELECT id, path, start_line, end_line, content, language, symbol, heading, file_kind, package, "
            "parent_start, parent_end, parent FROM rag_chunks WHERE id = ANY(%s)",
            (list(ids),),
        ).fetchall()
        return {r[0]: Chunk(*r[1:10], parent=None if r[12] is None else (r[10], r[11], r[12])) for r in rows}

    def file_chunk_ids(self, info: IndexInfo, paths: Sequence[str], limit: int) -> list[int]:
        """First chunks of the given files/folders (for explicitly referenced paths that match nothing)."""
        path_sql, params = path_filter(paths)
        rows = self.conn.execute(
            f"SELECT c.id FROM rag_chunks c WHERE c.index_id = %(idx)s {path_sql} "
            "ORDER BY c.path, c.start_line LIMIT %(lim)s",
            {"idx": info.id, "lim": limit, **params},
        ).fetchall()
        return [r[0] for r in rows]
