"""Every SQL value is a bound parameter: quotes, semicolons and SQL in repo names, file paths,
X-Context-Refs paths and query text round-trip verbatim through the real indexer, the real
pgvector store and the real proxy, and no table is touched by them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest

from carrot_hooks.serve import ROOT

HOSTILE_FILE = """src/o'neil"; DROP TABLE rag_chunks;--.py"""
# per process: pytest-xdist workers (and CI jobs sharing a store) must not index and drop the same name
HOSTILE_REPO = f"""o'brien-{uuid.uuid4().hex[:8]}"); DELETE FROM rag_indexes; --"""
HOSTILE_QUERY = """How is the wobble factor computed? ' OR '1'='1'; DROP TABLE rag_files; -- %(idx)s $1 \\' E'\\x00'"""
TABLES = ("rag_indexes", "rag_files", "rag_chunks")


def cli(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag_indexer.cli", "--no-progress", *args], cwd=ROOT,  # noqa: PLW1510
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PGVECTOR_URL": url})


def table_counts(url: str, names: tuple[str, ...]) -> dict[str, int]:
    """Rows of the tables that belong to the indexes `names` (the hostile statements would empty or drop the
    whole tables; other workers' indexes come and go meanwhile, so only this module's own are counted)."""
    own = "SELECT id FROM rag_indexes WHERE kind = 'code' AND name = ANY(%s)"
    with psycopg.connect(url, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE {'id' if t == 'rag_indexes' else 'index_id'} "
                                f"IN ({own})", (list(names),)).fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def hostile_repo(chaos, tmp_path_factory):
    """A code tree with a hostile file name, indexed twice: under a safe repo name (reachable through
    X-Context-Refs, whose repo part only allows [A-Za-z0-9._/-]) and under a hostile one (CLI)."""
    root = tmp_path_factory.mktemp("hostile")
    target = root / HOSTILE_FILE
    target.parent.mkdir(parents=True)
    target.write_text('"""Wobble maths."""\n\n\ndef wobble_factor(mass, spin):\n'
                      '    """Return the wobble factor: mass times spin squared, halved."""\n'
                      "    return mass * spin * spin / 2\n")
    (root / "src" / "plain.py").write_text("def unrelated():\n    return 1\n")
    safe = f"sql-safe-{uuid.uuid4().hex[:8]}"
    for name in (safe, HOSTILE_REPO):
        out = cli("code", str(root), "--repo", name, "--ref", "abc1234", url=chaos.store_url)
        assert out.returncode == 0, out.stderr
    names = (safe, HOSTILE_REPO)
    assert table_counts(chaos.store_url, names) == {"rag_indexes": 2, "rag_files": 4, "rag_chunks": 6}
    yield {"safe": safe, "names": names}
    from rag_indexer.store import Store

    store = Store(chaos.store_url)
    for name in (safe, HOSTILE_REPO):
        store.drop_index("code", name)
    store.close()


def test_hostile_repo_name_and_path_round_trip_through_the_cli(chaos, hostile_repo):
    before = table_counts(chaos.store_url, hostile_repo["names"])
    out = cli("query", HOSTILE_QUERY, "--repo", HOSTILE_REPO, "--path", HOSTILE_FILE, "--json", url=chaos.store_url)
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert hits and all(h["path"] == HOSTILE_FILE for h in hits), hits
    assert table_counts(chaos.store_url, hostile_repo["names"]) == before


def test_hostile_path_and_query_through_the_proxy(chaos, fake_upstream, hostile_repo):
    before = table_counts(chaos.store_url, hostile_repo["names"])
    marker = f"sql-{uuid.uuid4().hex[:8]}"
    refs = f"{hostile_repo['safe']}@abc1234,{HOSTILE_FILE}"
    r = httpx.post(f"{chaos.base_url}/v1/chat/completions", timeout=60,
                   headers={**chaos.headers(), "X-Task-Type": "rag-code", "X-Context-Refs": refs},
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"{HOSTILE_QUERY} {marker}"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-rag"].startswith("injected:"), r.headers
    sent = fake_upstream.find(marker)[-1].text
    assert "wobble_factor" in sent and json.dumps(HOSTILE_FILE)[1:-1] in sent
    assert table_counts(chaos.store_url, hostile_repo["names"]) == before


@pytest.mark.parametrize("path", ["a' OR 'x'='x", "b%' OR path LIKE '%", "c\\'; SELECT pg_sleep(30);--"])
def test_injected_path_filters_match_nothing(chaos, hostile_repo, path):
    before = table_counts(chaos.store_url, hostile_repo["names"])
    r = httpx.post(f"{chaos.base_url}/v1/chat/completions", timeout=20,
                   headers={**chaos.headers(), "X-Task-Type": "rag-code",
                            "X-Context-Refs": f"{hostile_repo['safe']}@abc1234,{path}"},
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "wobble factor?"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-carrot-rag"] == "none"  # the filter is a value, so it matches no file
    assert table_counts(chaos.store_url, hostile_repo["names"]) == before
