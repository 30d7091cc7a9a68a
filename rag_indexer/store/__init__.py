"""pgvector + Postgres full-text store, one module per responsibility: schema, index records, writes,
embedding cache, dense search, lexical search (BM25, typo correction, symbols, paths), reads.

psycopg + pgvector directly rather than llama-index's PGVectorStore: we need per-chunk
window vectors, BM25 (Postgres' ts_rank has no IDF) and a few-ms query path, none of which
its node/hybrid API offers. All values go in as bound parameters.
"""

from __future__ import annotations

from .base import Hit, IndexInfo, Read, StoreError, check_model
from .dense import Dense
from .embed_cache import EmbedCache
from .indexes import Indexes
from .lexical import Lexical
from .reads import ChunkMeta, Reads
from .writes import Writes

__all__ = ["ChunkMeta", "Hit", "IndexInfo", "Read", "Store", "StoreError", "check_model"]


class Store(Indexes, Writes, EmbedCache, Dense, Lexical, Reads):
    """One connection to the RAG database with every store operation."""
