"""Writes: one file's chunks, postings and window vectors replaced atomically; deleted files dropped."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..chunk import Chunk
from .base import Connection, IndexInfo

TS_CONFIG = "english"


class Writes(Connection):
    def delete_files(self, info: IndexInfo, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self.conn.transaction():
            self.conn.execute("SELECT 1 FROM rag_files WHERE index_id = %s AND path = ANY(%s) ORDER BY path FOR UPDATE",
                              (info.id, list(paths)))  # a replace of one of them waits for this (see replace_file)
            self._delete_chunks(info, list(paths))
            self.conn.execute("DELETE FROM rag_files WHERE index_id = %s AND path = ANY(%s)", (info.id, list(paths)))

    def _delete_chunks(self, info: IndexInfo, paths: list[str]) -> None:
        """These files' chunks with their vectors (no cascade reaches a partition: schema.per_dim_schema), in one
        statement: the vectors deleted are those of exactly the chunks deleted, whatever runs beside it."""
        self._changed += self.conn.execute(
            "WITH gone AS (DELETE FROM rag_chunks WHERE index_id = %s AND path = ANY(%s) RETURNING id), "
            f"v AS (DELETE FROM {info.vectors} WHERE chunk_id IN (SELECT id FROM gone)) "
            "SELECT count(*) FROM gone", (info.id, paths)).fetchone()[0]

    def replace_file(
        self, info: IndexInfo, path: str, blob: str, chunks: Sequence[Chunk], terms: Sequence[str],
        vectors: Sequence[Sequence[np.ndarray]],
    ) -> None:
        """Atomically replace one file's chunks; `terms[i]` is chunk i's search text, `vectors[i]` its windows.

        A handful of statements per file, not per chunk: on a loaded machine every round trip waits for the
        scheduler (a cached re-index of a 4,500-chunk release spent most of its time there). The file's row is
        written first: it locks the file, so a second writer of the same file waits for this one to commit and
        then deletes its chunks too (otherwise both deletes see only the old chunks and both new sets stay).
        """
        if len(terms) != len(chunks) or len(vectors) != len(chunks):
            raise ValueError("replace_file: chunks, terms and vectors differ in length")
        with self.conn.transaction():
            self.conn.execute(
                "INSERT INTO rag_files (index_id, path, blob) VALUES (%s, %s, %s) "
                "ON CONFLICT (index_id, path) DO UPDATE SET blob = EXCLUDED.blob",
                (info.id, path, blob),
            )
            self._delete_chunks(info, [path])
            self._changed += len(chunks)
            if chunks:
                ids = [r[0] for r in self.conn.execute(
                    "SELECT nextval(pg_get_serial_sequence('rag_chunks', 'id')) FROM generate_series(1, %s)",
                    (len(chunks),)).fetchall()]
                doclens = [max(1, len(t.split())) for t in terms]
                parents = [c.parent or (None, None, None) for c in chunks]
                self.conn.execute(
                    "INSERT INTO rag_chunks (id, index_id, path, language, symbol, heading, start_line, end_line, "
                    "content, doclen, file_kind, package, parent_start, parent_end, parent) "
                    "SELECT c.id, %s, %s, c.language, c.symbol, c.heading, c.start_line, c.end_line, c.content, "
                    "c.doclen, c.kind, c.package, c.parent_start, c.parent_end, c.parent "
                    "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::text[], "
                    "%s::int[], %s::text[], %s::text[], %s::int[], %s::int[], %s::text[]) AS c(id, language, symbol, "
                    "heading, start_line, end_line, content, doclen, kind, package, parent_start, parent_end, parent)",
                    (info.id, path, ids, [c.language for c in chunks], [c.symbol for c in chunks],
                     [c.heading for c in chunks], [c.start_line for c in chunks], [c.end_line for c in chunks],
                     [c.text for c in chunks], doclens, [c.kind for c in chunks], [c.package for c in chunks],
                     [p[0] for p in parents], [p[1] for p in parents], [p[2] for p in parents]),
                )
                self.conn.execute(
                    "INSERT INTO rag_postings (index_id, lexeme, chunk_id, tf, doclen) "
                    "SELECT %s, t.lexeme, c.id, coalesce(array_length(t.positions, 1), 1), c.doclen "
                    "FROM unnest(%s::bigint[], %s::int[], %s::text[]) AS c(id, doclen, terms), "
                    f"unnest(to_tsvector('{TS_CONFIG}', c.terms)) AS t",
                    (info.id, ids, doclens, list(terms)),
                )
                with self.conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {info.vectors} (chunk_id, index_id, embedding) "
                        "VALUES (%s, %s, %s)",
                        [(cid, info.id, v) for cid, vecs in zip(ids, vectors) for v in vecs],
                    )
