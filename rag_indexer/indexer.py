"""Incremental indexing of a code tree or a docs folder into the store."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .chunk import Chunk
from .code_chunker import chunk_code
from .doc_chunker import DOC_EXTENSIONS, chunk_doc, count_tokens
from .embedding import Embedder
from .files import (
    IndexerError,
    SourceFile,
    content_kind,
    git_head,
    is_indexable_text,
    list_files,
)
from .settings import EmbeddingSettings
from .store import Store
from .text import search_text, windows

FILES_PER_BATCH = 48
LABEL_REPEAT = 3  # full-text field weight of path, symbol and heading (repeated terms)


@dataclass(frozen=True)
class IndexReport:
    kind: str
    name: str
    commit: str | None
    files: int
    indexed: int
    unchanged: int
    deleted: int
    chunks_written: int
    chunks_total: int
    seconds: float
    tokens_written: int = 0  # text tokens of the chunks written (code and docs compare per token)
    cpu_seconds: float = 0.0  # this process's CPU time (all threads; the database server's is not counted)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    def rate(self) -> str:
        """`12.3 chunks/s, 1,234 tokens/s, 40.1 per CPU-s` for the summary line (per CPU-second of this
        process: comparable on a loaded machine); never a rounded-down 0."""
        if not self.chunks_written or self.seconds <= 0:
            return "nothing to embed"
        per_cpu = f", {self.chunks_written / self.cpu_seconds:.3g} per CPU-s" if self.cpu_seconds > 0 else ""
        return f"{self.chunks_per_s:.3g} chunks/s, {self.tokens_written / self.seconds:,.0f} tokens/s{per_cpu}"


def chunk_file(kind: str, path: str, text: str, f: SourceFile | None = None) -> list[Chunk]:
    """The file's chunks, each labelled with the file's kind (code indexes)."""
    if kind != "code":
        return chunk_doc(path, text)
    file_kind, package = content_kind(f.kind, f.package, f.path, text) if f else ("source", "")
    return [replace(c, kind=file_kind, package=package) for c in chunk_code(path, text)]


def embed_texts(kind: str, chunk: Chunk, cfg: EmbeddingSettings) -> list[str]:
    """What gets embedded for a chunk: a label line plus windows of its text (by policy one each: its head).

    The label names the file, not its folder, so moved or copied files hit the embedding cache.
    """
    label = " ".join(x for x in (chunk.path.rsplit("/", 1)[-1], chunk.symbol, chunk.heading) if x)
    if kind == "code":
        size, overlap, most = cfg.code_window_words, cfg.code_window_words // 4, cfg.code_max_windows
    else:
        size, overlap, most = cfg.window_words, cfg.window_overlap, cfg.max_windows_per_chunk
    wins = windows(chunk.text, size, overlap)[:most] or [""]
    return [f"{label}\n{w}" for w in wins]


def _embed_cached(store: Store, embedder: Embedder, texts: list[str]) -> dict[str, np.ndarray]:
    """Vectors for `texts`, reusing the store's cache (unchanged functions across files, commits, repos)."""
    unique = list(dict.fromkeys(texts))
    found = store.cached_vectors(embedder.model_id, embedder.dim, unique)
    missing = [t for t in unique if t not in found]
    if missing:
        fresh = dict(zip(missing, embedder.embed(missing)))
        store.cache_vectors(embedder.model_id, embedder.dim, fresh)
        found.update(fresh)
    return found


def _select(kind: str, root: Path) -> list[SourceFile]:
    files = list_files(root)
    if kind == "docs":
        files = [f for f in files if "." + f.path.rsplit(".", 1)[-1].lower() in DOC_EXTENSIONS]
    return files


def index_tree(
    store: Store, embedder: Embedder, cfg: EmbeddingSettings, kind: str, root: Path, name: str,
    commit: str | None = None, reset: bool = False, base_url: str | None = None,
    progress: Callable[[int], None] | None = None, on_total: Callable[[int], None] | None = None,
) -> IndexReport:
    """Index `root` as `kind` ("code" | "docs") under `name`; only changed files are re-read."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    root = Path(root)
    if not root.exists():
        raise IndexerError(f"path does not exist: {root}")
    if not root.is_dir():
        raise IndexerError(f"not a directory: {root}")
    files = _select(kind, root)
    if not files:
        what = "source files" if kind == "code" else "documents (.md, .rst, .html, .txt)"
        raise IndexerError(f"no {what} to index under {root}")
    if kind == "code" and commit is None:
        commit = git_head(root)
    if reset:
        store.drop_index(kind, name)
    info = store.ensure_index(kind, name, embedder.model_id, embedder.dim)
    prefix = base_url.rstrip("/") + "/" if base_url else ""
    known = store.file_blobs(info.id)
    current = {prefix + f.path: f for f in files}
    deleted = [p for p in known if p not in current]
    store.delete_files(info, deleted)
    todo = [(p, f) for p, f in current.items() if known.get(p) != f.blob]
    if on_total:
        on_total(len(todo))
    written = tokens = 0
    for i in range(0, len(todo), FILES_PER_BATCH):
        batch = todo[i : i + FILES_PER_BATCH]
        per_file: list[tuple[str, SourceFile, list[Chunk]]] = []
        for path, f in batch:
            data = f.abspath.read_bytes()
            chunks = chunk_file(kind, path, data.decode("utf-8"), f) if is_indexable_text(data) else []
            per_file.append((path, f, chunks))
        texts = {c: embed_texts(kind, c, cfg) for _, _, chunks in per_file for c in chunks}
        vec_of = _embed_cached(store, embedder, [t for ts in texts.values() for t in ts])
        for path, f, chunks in per_file:
            vectors = [[vec_of[t] for t in texts[c]] for c in chunks]
            terms = [search_text(f"{c.path} {c.symbol} {c.heading} " * LABEL_REPEAT + c.text) for c in chunks]
            store.replace_file(info, path, f.blob, chunks, terms, vectors)
            written += len(chunks)
            tokens += sum(count_tokens(c.text) for c in chunks)
        if progress:
            progress(len(batch))
    info = store.finish_run(info, commit)
    return IndexReport(
        kind, name, commit, len(files), len(todo), len(files) - len(todo), len(deleted), written, info.chunks,
        time.perf_counter() - t0, tokens, time.process_time() - cpu0,
    )
