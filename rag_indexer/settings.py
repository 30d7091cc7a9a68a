"""`policy/rag.yaml` as typed settings (a query reads the JSON snapshot `load_settings` saves: quick_settings)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from carrot_common.config import Strict as _Strict
from carrot_common.config import load_model, read_file

from .chunk import FILE_KINDS
from .quick_settings import policy_bytes, policy_file, save_snapshot

IndexKind = Literal["code", "docs"]
FileKind = Literal["source", "test", "vendored", "docs", "changelog", "example", "tooling", "config",
                   "generated"]
Tier = int | Literal["named", "off"]


class StoreSettings(_Strict):
    url_env: str = "PGVECTOR_URL"
    connect_timeout_s: float = Field(2.0, gt=0, le=30)


class EmbeddingSettings(_Strict):
    model: str = "BAAI/bge-small-en-v1.5"
    allow_download: bool = False
    window_words: int = Field(64, ge=16, le=512)
    window_overlap: int = Field(16, ge=0, le=256)
    max_windows_per_chunk: int = Field(1, ge=1, le=64)
    code_window_words: int = Field(48, ge=16, le=512)
    code_max_windows: int = Field(1, ge=1, le=64)
    query_threads: int = Field(1, ge=1, le=64)  # ONNX threads in a query's run (float graph: 2 for less wall)
    query_int8: bool = True  # queries run an int8 graph made from the index's float graph (0.39x its CPU)
    query_max_tokens: int | None = Field(32, ge=8, le=512)  # query embedding cost is linear in tokens
    index_threads: int | None = Field(None, ge=1, le=64)  # None = all cores


class Weights(_Strict):
    """RRF weight per ranking; 0 turns a ranking off (code_terms, symbol and path are for code)."""

    dense: float = Field(1.0, ge=0)
    fulltext: float = Field(1.0, ge=0)
    code_terms: float = Field(1.0, ge=0)  # BM25 over the code signals of the message only
    symbol: float = Field(1.0, ge=0)
    path: float = Field(1.0, ge=0)
    phrase: float = Field(0.0, ge=0)  # candidates holding wording quoted in the message (output, messages)


class KindWeights(_Strict):
    code: Weights = Weights(dense=1.5, symbol=0.5, path=0.5, phrase=0.5)
    docs: Weights = Weights(dense=0.5, code_terms=0, symbol=0, path=0)


def _full(tiers: dict[str, Tier]) -> dict[str, Tier]:
    missing = [k for k in FILE_KINDS if k not in tiers]
    if missing:
        raise ValueError(f"every file kind needs a tier; missing: {', '.join(missing)}")
    return tiers


class FileKindSettings(_Strict):
    """In which order file kinds fill a code question's results: tier 0 first, then 1, ... (by relevance within
    a tier); `named`: only when the query names the file or the vendored package; `off`: never."""

    tiers: dict[FileKind, Tier] = Field(default_factory=lambda: {
        "source": 0, "example": 1, "tooling": 1, "docs": 1, "changelog": 1, "config": 1, "test": 2,
        "vendored": "named", "generated": "named"})
    # ...when the question is about tests (task `tests`, a test file named, or `tests_pattern` matches)
    tests_tiers: dict[FileKind, Tier] = Field(default_factory=lambda: {
        "source": 0, "test": 0, "example": 1, "tooling": 1, "docs": 1, "changelog": 1, "config": 1,
        "vendored": "named", "generated": "named"})
    tests_pattern: str = (r"(?i)\b(?:unit[ -]tests?|test (?:suite|files|cases)|(?:the|our|its|failing|flaky) tests"
                          r"|tests? (?:for|of|in)|fixtures? (?:file|in|for))\b")

    _full_tiers = field_validator("tiers", "tests_tiers")(_full)

    @field_validator("tests_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return v


class RetrievalSettings(_Strict):
    top_k: int = Field(3, ge=1, le=50)
    candidates: int = Field(40, ge=5, le=1000)
    rrf_k: int = Field(10, ge=1)
    phrase_candidates: int = Field(50, ge=1, le=1000)  # the first N fused candidates are checked for quoted wording
    weights: KindWeights = KindWeights()
    # index kinds whose files are fused first (RRF over each ranking's file order), then their chunks
    fuse_files: tuple[IndexKind, ...] = ("code",)
    max_query_terms: int = Field(40, ge=1, le=512)
    # full-text skips lexemes found in more than this share of an index's chunks (per index kind)
    max_term_df: dict[IndexKind, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: {"code": 0.1, "docs": 0.3})
    query_window_words: int = Field(64, ge=16, le=512)
    max_query_windows: int = Field(1, ge=1, le=32)
    # the best hit must pass one of these to count as relevant (else "none"); then k hits are returned
    min_dense_similarity: float = Field(0.35, ge=-1, le=1)
    min_fulltext_score: float = Field(2.0, ge=0)
    max_chunk_chars: int = Field(8000, ge=200)
    # typo tolerance: an unknown query word also matches the indexed lexeme this trigram-similar (0 = off)
    typo_similarity: dict[IndexKind, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {"code": 0.0, "docs": 0.5})
    # a result whose text is this similar (word-trigram Jaccard) to a higher one goes behind the rest (1 = off)
    diversify_similarity: dict[IndexKind, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: {"code": 1.0, "docs": 0.6})
    # docs: a chunk of a document longer than the median candidate document scores / (1 + this × ln(its
    # chunks / median)): a guide touching every topic has a chance per chunk to come first (0 = off)
    long_doc_discount: float = Field(0.1, ge=0, le=10)
    file_kinds: FileKindSettings = FileKindSettings()


class GatewaySettings(_Strict):
    # rag-code without X-Context-Refs: the key's `carrot_repos` metadata, then its team's, then these
    default_repos: tuple[str, ...] = ()
    default_collection: str | None = "docs"


class RagSettings(_Strict):
    store: StoreSettings = StoreSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    gateway: GatewaySettings = GatewaySettings()


def load_settings(path: Path | None = None) -> RagSettings:
    """`path` or `<policy dir>/rag.yaml`; defaults when the default file does not exist. Saves the result as
    the snapshot a query reads instead, keyed by the very bytes validated."""
    data = policy_bytes(path, read_file)
    settings = RagSettings() if data is None else load_model(policy_file(path), RagSettings, data)
    save_snapshot(path, data, settings.model_dump(mode="json"))
    return settings
