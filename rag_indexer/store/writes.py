"""Writes: one file's chunks, postings and window vectors replaced atomically; deleted files dropped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..chunk import Chunk
from .base import Connection, IndexInfo
from .schema import vec_table

TS_CONFIG = "english"


class Writes(Connection):
    def delete_files(self, info: IndexInfo, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self.conn.transaction():
            self._changed += self.conn.execute(
                "DELETE FROM rag_chunks WHERE index_id = %s AND path = ANY(%s)", (info.id, list(paths))).rowcount
            self.conn.execute("DELETE FROM rag_files WHERE index_id = %s AND path = ANY(%s)", (info.id, list(paths)))

    def replace_file(
        self, info: IndexInfo, path: str, blob: str, chunks: Sequence[Chunk], terms: Sequence[str],
        vectors: Sequence[Sequence[np.ndarray]],
    ) -> None:
        """Atomically replace one file's chunks; `terms[i]` is chunk i's search text, `vectors[i]` its windows."""
        table = vec_table(info.dim)
        with self.conn.transaction():
            self._changed += self.conn.execute(
                "DELETE FROM rag_chunks WHERE index_id = %s AND path = %s", (info.id, path)).rowcount
            self._changed += len(chunks)
            for chunk, term_text, vecs in zip(chunks, terms, vectors, strict=True):
                parent = chunk.parent or (None, None, None)
                doclen = max(1, len(term_text.split()))
                chunk_id = self.conn.execute(
                    "INSERT INTO rag_chunks (index_id, path, language, symbol, heading, start_line, end_line, "
                    "content, doclen, file_kind, package, parent_start, parent_end, parent) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (info.id, path, chunk.language, chunk.symbol, chunk.heading, chunk.start_line, chunk.end_line,
                     chunk.text, doclen, chunk.kind, chunk.package, *parent),
                ).fetchone()[0]
                self.conn.execute(
                    "INSERT INTO rag_postings (index_id, lexeme, chunk_id, tf, doclen) "
                    "SELECT %s, lexeme, %s, coalesce(array_length(positions, 1), 1), %s "
                    f"FROM unnest(to_tsvector('{TS_CONFIG}', %s))",
                    (info.id, chunk_id, doclen, term_text),
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
