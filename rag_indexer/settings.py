"""`policy/rag.yaml` as typed settings, and where the store and models live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from carrot_hooks.config import load_model, policy_dir

from .embedding import EmbeddingSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(_Strict):
    url_env: str = "PGVECTOR_URL"
    connect_timeout_s: float = Field(2.0, gt=0, le=30)


class EmbeddingSettings(_Strict):
    model: str = "BAAI/bge-small-en-v1.5"
    allow_download: bool = False
    window_words: int = Field(128, ge=16, le=512)
    window_overlap: int = Field(32, ge=0, le=256)
    max_windows_per_chunk: int = Field(10, ge=1, le=64)
    code_window_words: int = Field(48, ge=16, le=512)
    code_max_windows: int = Field(1, ge=1, le=64)
    query_threads: int | None = Field(1, ge=1, le=64)  # per query one thread: least CPU per request under load
    query_max_tokens: int | None = Field(32, ge=8, le=512)  # query embedding cost is linear in tokens
    index_threads: int | None = Field(None, ge=1, le=64)  # None = all cores


class Weights(_Strict):
    """RRF weight per ranking; 0 turns a ranking off (code_terms, symbol and path are for code)."""

    dense: float = Field(1.0, ge=0)
    fulltext: float = Field(1.0, ge=0)
    code_terms: float = Field(1.0, ge=0)  # BM25 over the code signals of the message only
    symbol: float = Field(1.0, ge=0)
    path: float = Field(1.0, ge=0)


class KindWeights(_Strict):
    code: Weights = Weights(dense=1.5, symbol=0.5, path=0.5)
    docs: Weights = Weights(dense=0.5, code_terms=0, symbol=0, path=0)


class RetrievalSettings(_Strict):
    top_k: int = Field(3, ge=1, le=50)
    candidates: int = Field(40, ge=5, le=1000)
    rrf_k: int = Field(10, ge=1)
    weights: KindWeights = KindWeights()
    # index kinds whose files are fused first (RRF over each ranking's file order), then their chunks
    fuse_files: tuple[Literal["code", "docs"], ...] = ("code",)
    max_query_terms: int = Field(40, ge=1, le=512)
    # full-text skips lexemes found in more than this share of an index's chunks (per index kind)
    max_term_df: dict[Literal["code", "docs"], Annotated[float, Field(gt=0, le=1)]] = {"code": 0.1, "docs": 0.3}
    query_window_words: int = Field(64, ge=16, le=512)
    max_query_windows: int = Field(1, ge=1, le=32)
    min_dense_similarity: float = Field(0.35, ge=-1, le=1)
    min_fulltext_score: float = Field(2.0, ge=0)
    max_chunk_chars: int = Field(8000, ge=200)


class GatewaySettings(_Strict):
    default_repo: str | None = None
    default_collection: str | None = "docs"


class RagSettings(_Strict):
    store: StoreSettings = StoreSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    gateway: GatewaySettings = GatewaySettings()


def load_settings(path: Path | None = None) -> RagSettings:
    """`path` or `<policy dir>/rag.yaml`; defaults when the default file does not exist."""
    if path is None:
        path = policy_dir() / "rag.yaml"
        if not path.exists():
            return RagSettings()
    return load_model(Path(path), RagSettings)


def state_dir() -> Path:
    """Project state folder (`CARROT_STATE_DIR`, default `./.state`)."""
    return Path(os.environ.get("CARROT_STATE_DIR", ".state")).resolve()


def embedding_spec(settings: RagSettings, for_query: bool = True) -> EmbeddingSpec:
    cfg = settings.embedding
    return EmbeddingSpec(
        model=cfg.model, models_dir=state_dir() / "models", allow_download=cfg.allow_download,
        threads=cfg.query_threads if for_query else cfg.index_threads,
        max_tokens=cfg.query_max_tokens if for_query else None,
    )


def store_url(settings: RagSettings) -> str:
    """The external store named by the env var, else the embedded server (started if needed)."""
    url = os.environ.get(settings.store.url_env)
    if url:
        return url
    from .embedded import ensure_server

    return ensure_server(state_dir())
