"""The store's reads on a real pgvector server. Window vectors in one partition per index: a search walks its own
index's HNSW graph, a store made before partitions is moved into them by the next indexer run with nothing lost,
and dropping an index drops its part. Symbol and path mentions match literally."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import psycopg
import pytest

from rag_indexer.chunk import Chunk
from rag_indexer.store import Store
from rag_indexer.store import indexes as indexes_mod
from rag_indexer.store.schema import SCHEMA_LOCK, vec_partition, vec_table
from tests import services

DIM, MODEL = 384, "test-model"
# the vector table of a store made before partitions: every index's windows in one table and one HNSW graph
LEGACY_VECTORS = f"""
CREATE TABLE {vec_table(DIM)} (chunk_id bigint NOT NULL REFERENCES rag_chunks ON DELETE CASCADE,
    index_id int NOT NULL, embedding vector({DIM}) NOT NULL);
CREATE INDEX {vec_table(DIM)}_hnsw ON {vec_table(DIM)} USING hnsw (embedding vector_cosine_ops);
CREATE INDEX {vec_table(DIM)}_chunk ON {vec_table(DIM)} (chunk_id);
"""


@pytest.fixture
def store():
    with services.fresh_database("rag_parts", services.pgvector_url()) as url:
        s = Store(url)
        yield s
        s.close()


def write(store: Store, info, path: str, vectors: np.ndarray, symbols: list[str] | None = None) -> None:
    """File `path` of index `info` as chunks whose chunk i (symbol `f<i>` unless given) has window vector i."""
    symbols = symbols or [f"f{i}" for i in range(len(vectors))]
    chunks = [Chunk(path=path, language="python", symbol=sym, heading="", start_line=i + 1, end_line=i + 1,
                    text=f"def {sym.rsplit('.', 1)[-1]}(): pass") for i, sym in enumerate(symbols)]
    store.replace_file(info, path, "blob", chunks, [c.text for c in chunks], [[v] for v in vectors])


def fill(store: Store, name: str, vectors: np.ndarray, symbols: list[str] | None = None, path: str = "a.py"):
    """An index whose file `path` has chunk i with window vector i, run finished (as the indexer writes them)."""
    store.conn.execute("INSERT INTO rag_indexes (kind, name, model, dim) VALUES ('code', %s, %s, %s) "
                       "ON CONFLICT DO NOTHING", (name, MODEL, DIM))
    write(store, store.index("code", name), path, vectors, symbols)
    store.finish_run(store.index("code", name), None)
    return store.index("code", name)


def nearest(store: Store, info, queries: np.ndarray, k: int) -> list[list[str]]:
    """Each query's k nearest chunks (by symbol) through the store's dense search."""
    out = []
    for q in queries:
        ids = [cid for cid, _, _ in store.dense(info, q[None, :], k)][:k]
        symbols = dict(store.conn.execute("SELECT id, symbol FROM rag_chunks WHERE id = ANY(%s)", (ids,)).fetchall())
        out.append([symbols[i] for i in ids])
    return out


def exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[str]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return [[f"f{i}" for i in np.argsort(-(unit @ (q / np.linalg.norm(q))))[:k]] for q in queries]


def foreign_keys(store: Store, table: str) -> list:
    return store.conn.execute("SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'f'",
                              (table,)).fetchall()


def relkind(store: Store | psycopg.Connection, name: str) -> str | None:
    conn = store if isinstance(store, psycopg.Connection) else store.conn
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (name,)).fetchone()
    return row[0] if row else None


def test_a_store_made_before_partitions_is_moved_into_them_with_nothing_lost(store):
    rng = np.random.default_rng(7)
    store.conn.execute(LEGACY_VECTORS)
    a_vecs, b_vecs = rng.normal(size=(300, DIM)), rng.normal(size=(200, DIM))
    a, b = fill(store, "a", a_vecs), fill(store, "b", b_vecs)
    c = fill(store, "c", rng.normal(size=(50, DIM)))
    assert store.drop_index("code", "c")  # before the move: its vectors go by the old table's cascade
    assert store.conn.execute(f"SELECT count(*) FROM {vec_table(DIM)} WHERE index_id = %s", (c.id,)).fetchone()[0] == 0
    assert a.vectors == b.vectors == vec_table(DIM) and relkind(store, vec_table(DIM)) == "r"
    queries = a_vecs[:5] + rng.normal(scale=0.3, size=(5, DIM))
    assert nearest(store, a, queries, 3) == exact(a_vecs, queries, 3)  # searched among both indexes' vectors

    a = store.ensure_index("code", "a", MODEL, DIM)  # what an indexer run does first: moves every index

    assert relkind(store, vec_table(DIM)) == "p"
    assert relkind(store, f"rag_embed_cache_{DIM}") == "r"  # what the store lacked is made too
    assert not foreign_keys(store, vec_table(DIM))
    assert a.vectors == vec_partition(DIM, a.id) and store.index("code", "b").vectors == vec_partition(DIM, b.id)
    counts = dict(store.conn.execute(f"SELECT index_id, count(*) FROM {vec_table(DIM)} GROUP BY 1").fetchall())
    assert counts == {a.id: 300, b.id: 200}
    assert nearest(store, a, queries, 3) == exact(a_vecs, queries, 3)
    b_queries = b_vecs[:5] + rng.normal(scale=0.3, size=(5, DIM))
    assert nearest(store, store.index("code", "b"), b_queries, 3) == exact(b_vecs, b_queries, 3)
    # each part has its own graph and chunk index, made from the parent's
    indexes = {r[0] for r in store.conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s",
                                                (vec_partition(DIM, a.id),))}
    assert any("USING hnsw (embedding vector_cosine_ops)" in d for d in indexes)
    assert any("(chunk_id)" in d for d in indexes)


def test_an_index_gets_its_own_partition_searched_by_its_graph_and_dropped_with_it(store):
    rng = np.random.default_rng(11)
    for name in ("x", "y"):
        store.ensure_index("code", name, MODEL, DIM)
    x = store.index("code", "x")
    x_vecs = rng.normal(size=(2500, DIM))
    write(store, x, "a.py", x_vecs)
    assert x.vectors == vec_partition(DIM, x.id) and relkind(store, x.vectors) == "r"
    # its own graph, not a sort of every row, also before the partition's first ANALYZE
    sql, params = store.dense_sql(dataclasses.replace(x, chunks=len(x_vecs)), x_vecs[:1], 100)
    plan = "\n".join(r[0] for r in store.conn.execute("EXPLAIN " + sql, params).fetchall())
    assert f"Index Scan using {x.vectors}_embedding_idx" in plan, plan
    x = store.finish_run(x, None)
    queries = x_vecs[:3] + rng.normal(scale=0.3, size=(3, DIM))
    assert nearest(store, x, queries, 3) == exact(x_vecs, queries, 3)

    def vectors() -> int:
        return store.conn.execute(f"SELECT count(*) FROM {x.vectors}").fetchone()[0]

    # no foreign key to cascade through: the writes take a replaced or deleted file's vectors themselves
    assert not foreign_keys(store, x.vectors)
    write(store, x, "a.py", x_vecs[:10])
    write(store, x, "b.py", x_vecs[:5])
    assert vectors() == 15
    store.delete_files(x, ["a.py"])
    assert vectors() == 5

    assert store.drop_index("code", "x")
    assert relkind(store, vec_partition(DIM, x.id)) is None
    assert store.dense(x, queries[:1], 10) == []  # a search that read the index before it was dropped
    assert store.conn.execute(f"SELECT count(*) FROM {vec_table(DIM)}").fetchone()[0] == 0
    assert store.index("code", "y").vectors == vec_partition(DIM, store.index("code", "y").id)


def test_symbol_and_path_mentions_match_literally(store):
    """`_` and `%` in a mention are characters, not LIKE wildcards; a dotted mention qualifies the symbol it ends;
    a path mention finds the file it names, the file whose tail it is, and the file that is its own tail, but a
    bare file name that two files share names neither."""
    rng = np.random.default_rng(3)
    store.ensure_index("code", "m", MODEL, DIM)
    for path, symbols in {"pkg/utils.py": ["Runner.get_result", "Runner.getxresult", "get_result"],
                          "other/utils.py": ["helper"], "src/pkg/deep/mod_a.py": ["Deep.run", "axb.run"],
                          "pkg/clock%.py": ["tick"]}.items():
        info = fill(store, "m", rng.normal(size=(len(symbols), DIM)), symbols, path)

    def symbols(names, dotted):
        rows = store.read(store.symbols_read(info, names, dotted, 10))[0]
        found = dict(store.conn.execute("SELECT id, symbol FROM rag_chunks WHERE id = ANY(%s)",
                                        ([cid for cid, _ in rows],)).fetchall())
        return [(found[cid], qualified) for cid, qualified in rows]

    assert symbols([], ["runner.get_result"]) == [("Runner.get_result", True), ("get_result", False)]
    assert symbols(["get_result"], []) == [("Runner.get_result", False), ("get_result", False)]
    assert symbols([], ["Deep.run"]) == [("Deep.run", True), ("axb.run", False)]
    assert symbols([], ["a_b.run"]) == [("Deep.run", False), ("axb.run", False)]  # `_` is not any character

    def paths(*mentions):
        return sorted(store.read(store.paths_matching_read(info, mentions))[0])

    assert paths("utils.py") == []  # two files share the name
    assert paths("pkg/utils.py") == ["pkg/utils.py"]
    assert paths("/home/dev/proj/src/pkg/deep/mod_a.py") == ["src/pkg/deep/mod_a.py"]  # the file is its tail
    assert paths("deep/mod_a.py", "mod_a.py") == ["src/pkg/deep/mod_a.py"]
    assert paths("mod-a.py", "pkg/utils_py", "clock_.py") == []
    assert paths("clock%.py") == ["pkg/clock%.py"]


def test_the_move_into_partitions_lets_searches_run_and_finish_meanwhile(store):
    """Searches lock rag_chunks and the vector table in either order (exact: chunks first; by the graph: vectors
    first); the move's swap takes both, so it gives up and tries again rather than deadlock with them."""
    rng = np.random.default_rng(5)
    store.conn.execute(LEGACY_VECTORS)
    small, large = fill(store, "small", rng.normal(size=(40, DIM))), fill(store, "large", rng.normal(size=(3000, DIM)))
    url = store.conn.info.dsn
    stop, errors, done = threading.Event(), [], []

    def search(name: str) -> None:
        s = Store(url)
        try:
            while not stop.is_set():
                info = s.index("code", name)
                assert s.dense(info, rng.normal(size=(1, DIM)), 10)
                done.append(name)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(e))
        finally:
            s.close()

    threads = [threading.Thread(target=search, args=(n,)) for n in ("small", "large", "small", "large")]
    for t in threads:
        t.start()
    try:
        assert store.ensure_index("code", "small", MODEL, DIM).vectors == vec_partition(DIM, small.id)
        before = len(done)
        while len(done) < before + 8 and not errors:  # searches go on against the partitions
            threading.Event().wait(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert {"small", "large"} <= set(done[before:])
    assert store.index("code", "large").vectors == vec_partition(DIM, large.id)


def test_mentions_ending_in_a_backslash_are_read_literally(store):
    rng = np.random.default_rng(9)
    store.ensure_index("code", "b", MODEL, DIM)
    info = fill(store, "b", rng.normal(size=(1, DIM)), ["Odd.name\\"], "dir\\/f.py")
    assert [q for _, q in store.read(store.symbols_read(info, [], ["odd.name\\"], 10))[0]] == [True]
    assert store.read(store.paths_matching_read(info, ["dir\\/f.py", "f.py\\"]))[0] == ["dir\\/f.py"]


def test_a_move_that_cannot_swap_in_time_leaves_the_store_working_and_the_next_run_moves_it(store, monkeypatch,
                                                                                          caplog):
    """A session holding rag_chunks (a long report, a dump, an autovacuum) past the swap's time: the indexer run
    goes on with the store as it was, and the next one moves it."""
    rng = np.random.default_rng(13)
    store.conn.execute(LEGACY_VECTORS)
    a_vecs = rng.normal(size=(100, DIM))
    a = fill(store, "a", a_vecs)
    monkeypatch.setattr(indexes_mod, "SWAP_WAIT_S", 1.0)
    with psycopg.connect(store.conn.info.dsn) as holder:  # a transaction that read rag_chunks and stays open
        holder.execute("SELECT count(*) FROM rag_chunks").fetchone()
        a = store.ensure_index("code", "a", MODEL, DIM)
        assert relkind(store, vec_table(DIM)) == "r" and a.vectors == vec_table(DIM)
        assert "stays as it was" in caplog.text
        more = rng.normal(size=(5, DIM))  # writes and searches go on as before
        write(store, a, "b.py", more, [f"b{i}" for i in range(5)])
        assert nearest(store, a, more[:1], 1) == [["b0"]]
    a = store.ensure_index("code", "a", MODEL, DIM)
    assert relkind(store, vec_table(DIM)) == "p" and a.vectors == vec_partition(DIM, a.id)
    assert store.conn.execute(f"SELECT count(*) FROM {a.vectors}").fetchone()[0] == 105
    assert nearest(store, a, more[:1], 1) == [["b0"]]


def test_a_drop_waits_for_the_schema_lock_a_move_holds(store):
    """A move copies every index's vectors: a drop that went ahead meanwhile would leave its copy behind."""
    rng = np.random.default_rng(17)
    store.ensure_index("code", "d", MODEL, DIM)
    d = fill(store, "d", rng.normal(size=(10, DIM)))
    dropped = threading.Event()
    with psycopg.connect(store.conn.info.dsn, autocommit=True) as mover:
        mover.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        worker = threading.Thread(target=lambda: store.drop_index("code", "d") and dropped.set())
        worker.start()
        while not (dropped.is_set() or mover.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)").fetchone()[0]):
            threading.Event().wait(0.01)
        assert not dropped.is_set() and relkind(mover, vec_partition(DIM, d.id)) == "r"
        mover.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    worker.join(60)
    assert dropped.is_set() and relkind(store, vec_partition(DIM, d.id)) is None


def test_two_writers_of_one_file_leave_one_of_their_chunk_sets(store):
    """Two indexer runs writing the same file at once (a re-index beside a watcher): whichever commits last wins
    whole; before, both deleted only the old chunks and both new sets stayed, so every hit came twice."""
    rng = np.random.default_rng(19)
    store.ensure_index("code", "w", MODEL, DIM)
    info = fill(store, "w", rng.normal(size=(3, DIM)))
    url, errors = store.conn.info.dsn, []

    def writer(tag: str) -> None:
        s = Store(url)
        try:
            write(s, info, "a.py", rng.normal(size=(4, DIM)), [f"{tag}{i}" for i in range(4)])
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(e))
        finally:
            s.close()

    # the holder keeps the old chunks, so both writers are under way before either ends
    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as watcher:
        holder.execute("SELECT 1 FROM rag_chunks WHERE path = 'a.py' FOR UPDATE").fetchall()
        threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("p", "q")]
        for t in threads:
            t.start()
        while not errors and watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").fetchone()[0] < 2:
            threading.Event().wait(0.01)
    for t in threads:
        t.join(60)
    assert not errors, errors
    symbols = sorted(r[0] for r in store.conn.execute(
        "SELECT symbol FROM rag_chunks WHERE index_id = %s AND path = 'a.py'", (info.id,)))
    assert symbols in (["p0", "p1", "p2", "p3"], ["q0", "q1", "q2", "q3"])
    vectors = store.conn.execute(f"SELECT count(*) FROM {info.vectors} v JOIN rag_chunks c ON c.id = v.chunk_id "
                                 "WHERE c.path = 'a.py'").fetchone()[0]
    assert vectors == 4 and store.conn.execute(f"SELECT count(*) FROM {info.vectors}").fetchone()[0] == 4
