"""Package direction and paths: rag_indexer stands without carrot_hooks, and `rag-indexer` finds the
project's policy and store from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from rag_indexer.embedded import SOCKET_PATH_MAX, ensure_server
from rag_indexer.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_rag_indexer_imports_without_carrot_hooks():
    code = (
        "import sys, rag_indexer.cli, rag_indexer.retrieve, rag_indexer.indexer, rag_indexer.settings, rag_indexer.store;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'carrot_hooks'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _env_without_project_settings() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PGVECTOR_URL", "CARROT_STATE_DIR", "CARROT_POLICY_DIR")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])}


def test_rag_indexer_from_another_folder_uses_the_projects_store_and_policy(tmp_path):
    url = ensure_server(ROOT / ".state")  # the project's embedded store (what `rag-indexer` uses by default)
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "pkg").mkdir(parents=True)
    elsewhere.mkdir()
    (repo / "pkg" / "clock.py").write_text("def tick_interval_ms():\n    return 250\n")
    env = _env_without_project_settings()
    name = f"anywhere-{uuid.uuid4().hex[:8]}"

    def cli(*args: str, cwd: Path) -> str:
        out = subprocess.run([sys.executable, "-m", "rag_indexer.cli", "--no-progress", *args], cwd=cwd, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout

    try:
        assert cli("db", "url", cwd=elsewhere).strip() == url
        assert f"code {name}@" in cli("code", str(repo), "--repo", name, cwd=elsewhere)
        assert "pkg/clock.py:L1-L2" in cli("query", "tick interval", "--repo", name, cwd=ROOT)  # same store
    finally:
        store = Store(url)
        store.drop_index("code", name)
        store.close()


def test_a_state_dir_too_deep_for_a_socket_path_still_gets_its_store(tmp_path):
    """A clone deep in the file system (e.g. a CI workspace): the server's socket goes to a short folder."""
    state = tmp_path / ("d" * 60) / ".state"
    assert len(str(state / "pg" / ".s.PGSQL.5432").encode()) > SOCKET_PATH_MAX
    env = {k: v for k, v in _env_without_project_settings().items() if k != "XDG_RUNTIME_DIR"}
    code = ("import sys, psycopg; from rag_indexer.embedded import ensure_server;"
            "url = ensure_server(sys.argv[1]); print(psycopg.connect(url).execute("
            "\"SELECT extversion FROM pg_extension WHERE extname = 'vector'\").fetchone()[0])")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(state)], env=env, capture_output=True, text=True,
                             timeout=600, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().startswith("0.")  # pgvector answers through the short socket folder
    finally:  # in a child too: the runtime-dir default it sets must not leak into this test process
        stop = "import sys; from rag_indexer.embedded import stop_server; stop_server(sys.argv[1])"
        subprocess.run([sys.executable, "-c", stop, str(state)], env=env, timeout=120, check=True)


def test_schema_version_covers_the_statements_not_the_comments():
    """Stores run the DDL when the version differs: a comment edit must not make them, a statement edit must."""
    from rag_indexer.store.schema import (
        SCHEMA,
        SCHEMA_VERSION,
        TRIGRAM_SCHEMA,
        schema_version,
    )

    sql = SCHEMA + TRIGRAM_SCHEMA
    assert schema_version(sql) == SCHEMA_VERSION
    assert schema_version(sql.replace("-- file kind (", "-- the file's kind (")) == SCHEMA_VERSION
    assert schema_version("  -- a note\n" + sql) == SCHEMA_VERSION
    assert schema_version(sql.replace("parent_end int;", "parent_end bigint;")) != SCHEMA_VERSION


def test_connections_opening_a_new_store_at_once_all_get_its_schema():
    """Search processes, replicas and indexers may all open a new store at the same moment: each runs the DDL
    under one advisory lock (without it, concurrent CREATE ... IF NOT EXISTS failed on a catalog index)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.services import fresh_database, pgvector_url

    start = threading.Barrier(6)

    def store_of(_):
        start.wait()
        return Store(url)

    with fresh_database("carrot_schema_race", pgvector_url()) as url:
        with ThreadPoolExecutor(6) as pool:
            stores = list(pool.map(store_of, range(6)))
        try:
            assert all(s.trigrams for s in stores)
            assert stores[0].conn.execute("SELECT count(*) FROM rag_indexes").fetchone() == (0,)
        finally:
            for s in stores:
                s.close()
