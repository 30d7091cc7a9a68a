"""Embedding cache: text hash → vector per model, so unchanged text is never embedded twice."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from .base import Connection


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbedCache(Connection):
    def cached_vectors(self, model: str, dim: int, texts: Sequence[str]) -> dict[str, np.ndarray]:
        by_hash = {_digest(t): t for t in texts}
        rows = self.conn.execute(
            f"SELECT h, embedding FROM rag_embed_cache_{int(dim)} WHERE model = %s AND h = ANY(%s)",
            (model, list(by_hash)),
        ).fetchall()
        return {by_hash[bytes(h)]: np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32)
                for h, v in rows}

    def cache_vectors(self, model: str, dim: int, vectors: dict[str, np.ndarray]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO rag_embed_cache_{int(dim)} (model, h, embedding) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(model, _digest(t), np.asarray(v, dtype=np.float32)) for t, v in vectors.items()],
            )
