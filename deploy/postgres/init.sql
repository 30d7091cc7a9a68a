-- First start of the compose Postgres (pgvector/pgvector image): the `litellm` database is
-- created by POSTGRES_DB; add the vector store database with the pgvector extension.
CREATE DATABASE carrot_rag;
\connect carrot_rag
CREATE EXTENSION IF NOT EXISTS vector;
