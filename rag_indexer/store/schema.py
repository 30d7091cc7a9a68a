"""The store's tables, created (and migrated in place) on connect."""

from __future__ import annotations

import hashlib
import re

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS rag_indexes (
    id serial PRIMARY KEY, kind text NOT NULL, name text NOT NULL, commit text,
    model text NOT NULL, dim int NOT NULL, chunks int NOT NULL DEFAULT 0, avgdl real NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (kind, name));
CREATE TABLE IF NOT EXISTS rag_files (
    index_id int NOT NULL REFERENCES rag_indexes ON DELETE CASCADE, path text NOT NULL, blob text NOT NULL,
    PRIMARY KEY (index_id, path));
CREATE TABLE IF NOT EXISTS rag_chunks (
    id bigserial PRIMARY KEY, index_id int NOT NULL REFERENCES rag_indexes ON DELETE CASCADE,
    path text NOT NULL, language text NOT NULL, symbol text NOT NULL, heading text NOT NULL,
    start_line int NOT NULL, end_line int NOT NULL, content text NOT NULL, doclen int NOT NULL);
-- file kind (source, test, vendored, docs, changelog, example, tooling, config, generated), the vendored package's
-- name, and the enclosing section a small doc passage hands to the model (parent-child)
ALTER TABLE rag_chunks ADD COLUMN IF NOT EXISTS file_kind text NOT NULL DEFAULT 'source';
ALTER TABLE rag_chunks ADD COLUMN IF NOT EXISTS package text NOT NULL DEFAULT '';
ALTER TABLE rag_chunks ADD COLUMN IF NOT EXISTS parent_start int;
ALTER TABLE rag_chunks ADD COLUMN IF NOT EXISTS parent_end int;
ALTER TABLE rag_chunks ADD COLUMN IF NOT EXISTS parent text;
CREATE INDEX IF NOT EXISTS rag_chunks_file ON rag_chunks (index_id, path);
-- symbol_key: the symbol's last dotted part, lower-cased (`Foo.Bar` -> `bar`), derived by Postgres;
-- an older plain column of that name (filled by the indexer) is replaced once
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'rag_chunks'
                   AND column_name = 'symbol_key' AND is_generated = 'ALWAYS') THEN
        ALTER TABLE rag_chunks DROP COLUMN IF EXISTS symbol_key;
        ALTER TABLE rag_chunks ADD COLUMN symbol_key text
            GENERATED ALWAYS AS (lower(regexp_replace(symbol, '^.*\\.', ''))) STORED;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS rag_chunks_symbol ON rag_chunks (index_id, symbol_key);
CREATE TABLE IF NOT EXISTS rag_postings (
    index_id int NOT NULL, lexeme text NOT NULL, chunk_id bigint NOT NULL REFERENCES rag_chunks ON DELETE CASCADE,
    tf int NOT NULL, doclen int NOT NULL, PRIMARY KEY (index_id, lexeme, chunk_id));
CREATE INDEX IF NOT EXISTS rag_postings_chunk ON rag_postings (chunk_id);
-- BM25 reads postings by (index, lexeme): index-only scans, no heap visits (3x faster on long queries)
CREATE INDEX IF NOT EXISTS rag_postings_cover ON rag_postings (index_id, lexeme) INCLUDE (chunk_id, tf, doclen);
CREATE TABLE IF NOT EXISTS rag_terms (
    index_id int NOT NULL REFERENCES rag_indexes ON DELETE CASCADE, lexeme text NOT NULL, df int NOT NULL,
    PRIMARY KEY (index_id, lexeme));
"""

# typo-tolerant matching: a misspelt query word is mapped to the nearest indexed lexemes by trigram
# similarity (pg_trgm and btree_gin ship with PostgreSQL's contrib modules, and with the embedded server).
# The trigram index is keyed by index too: over every index's terms, one lookup in a store of 40 indexes
# read ~7 ms of other indexes' postings per word.
TRIGRAM_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS rag_terms_trgm_by_index ON rag_terms USING gin (index_id, lexeme gin_trgm_ops);
DROP INDEX IF EXISTS rag_terms_trgm;
"""
# a server with pg_trgm but not btree_gin: trigrams over all indexes' terms
TRIGRAM_FALLBACK_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS rag_terms_trgm ON rag_terms USING gin (lexeme gin_trgm_ops);
"""

def schema_version(sql: str) -> str:
    """A digest of the statements only: editing a comment line never makes every store run the DDL (and take
    its table locks) again."""
    return "carrot-rag " + hashlib.sha256(re.sub(r"(?m)^[ \t]*--.*\n", "", sql).encode()).hexdigest()[:16]


# the advisory lock a connection holds while it runs that DDL (any constant no other code of this database uses)
SCHEMA_LOCK = 0x43415252  # "CARR"
# recorded as rag_indexes' table comment: a connection runs the DDL above only when it differs
SCHEMA_VERSION = schema_version(SCHEMA + TRIGRAM_SCHEMA)


def vec_table(dim: int) -> str:
    return f"rag_vectors_{int(dim)}"


def vec_partition(dim: int, index_id: int) -> str:
    """The partition of `vec_table(dim)` holding one index's window vectors."""
    return f"{vec_table(dim)}_i{int(index_id)}"


def vector_table_sql(table: str, dim: int) -> str:
    """A partitioned window-vector table (no foreign key to rag_chunks: see `per_dim_schema`)."""
    return (f"CREATE TABLE IF NOT EXISTS {table} (chunk_id bigint NOT NULL, index_id int NOT NULL, "
            f"embedding vector({int(dim)}) NOT NULL) PARTITION BY LIST (index_id)")


# a vector table's indexes, named `<table>_<suffix>` (on a partitioned table, each partition gets its own)
VECTOR_INDEXES = {"hnsw": "USING hnsw (embedding vector_cosine_ops)", "chunk": "(chunk_id)"}


def vector_indexes_sql(table: str) -> str:
    return "".join(f"CREATE INDEX IF NOT EXISTS {table}_{suffix} ON {table} {how};\n"
                   for suffix, how in VECTOR_INDEXES.items())


def per_dim_relations(dim: int) -> list[str]:
    """What `per_dim_schema` makes: the vector table, its indexes, the embedding cache."""
    table = vec_table(dim)
    return [table, *(f"{table}_{suffix}" for suffix in VECTOR_INDEXES), f"rag_embed_cache_{int(dim)}"]


def per_dim_schema(dim: int) -> str:
    """The window-vector table and the embedding cache for one vector size. The vectors are partitioned by
    index, each partition with its own HNSW graph (made from the parent's index): a search walks its own
    index's vectors only (in one graph shared by 20 indexes, the filtered scan of an 11k-chunk index took 7 ms
    instead of ~2). No foreign key to rag_chunks: its cascade probes every partition's chunk index per deleted
    chunk (a 40-chunk file replaced in a store of 300 indexes: 2.16x the time), so the writes delete a file's
    vectors from its partition themselves. A table made before partitions is moved by `Indexes`."""
    table, d = vec_table(dim), int(dim)
    return f"""
{vector_table_sql(table, d)};
{vector_indexes_sql(table)}CREATE TABLE IF NOT EXISTS rag_embed_cache_{d} (model text NOT NULL, h bytea NOT NULL,
    embedding vector({d}) NOT NULL, PRIMARY KEY (model, h));
"""


def partition_schema(dim: int, index_id: int, parent: str | None = None) -> str:
    """One index's vector partition of `parent` (default `vec_table(dim)`); its HNSW graph and chunk index
    come from the parent's."""
    return (f"CREATE TABLE IF NOT EXISTS {vec_partition(dim, index_id)} PARTITION OF {parent or vec_table(dim)} "
            f"FOR VALUES IN ({int(index_id)})")
