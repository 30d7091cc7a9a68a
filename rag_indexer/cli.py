"""`rag-indexer`: index code and docs into pgvector, query them, manage the embedded store."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from carrot_common.errors import ConfigError
from carrot_common.paths import state_dir

from .embedding import Embedder, EmbeddingError, setup_offline_model
from .files import IndexerError
from .quick_settings import embedding_spec, load_snapshot, store_url
from .retrieve import MODES, NotIndexed, Query, Retriever, as_dict
from .store import Store, StoreError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag-indexer", description=__doc__)
    p.add_argument("--policy", type=Path, help="rag settings YAML (default: <policy dir>/rag.yaml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub = p.add_subparsers(dest="cmd", required=True)
    code = sub.add_parser("code", help="index a source tree or git checkout")
    code.add_argument("path", type=Path)
    code.add_argument("--repo", required=True, help="repository name the chunks are filed under")
    code.add_argument("--ref", help="commit SHA (default: HEAD of a git checkout)")
    code.add_argument("--reset", action="store_true", help="drop the repo's index first")
    docs = sub.add_parser("docs", help="index Markdown / reStructuredText / HTML / text documents")
    docs.add_argument("path", type=Path)
    docs.add_argument("--collection", required=True)
    docs.add_argument("--base-url", help="cite documents as BASE_URL/relative/path instead of the path")
    docs.add_argument("--reset", action="store_true")
    q = sub.add_parser("query", help="print retrieved chunks with scores and path:Lstart-Lend")
    q.add_argument("text")
    target = q.add_mutually_exclusive_group(required=True)
    target.add_argument("--repo")
    target.add_argument("--collection")
    q.add_argument("-k", type=int, default=5)
    q.add_argument("--commit")
    q.add_argument("--path", action="append", default=[], help="restrict to this file or folder (repeatable)")
    q.add_argument("--mode", choices=MODES, default="hybrid")
    q.add_argument("--json", action="store_true")
    sub.add_parser("setup-model", help="assemble the offline embedding model under the state dir")
    db = sub.add_parser("db", help="the store: print its URL, or stop the embedded server")
    db.add_argument("action", choices=("url", "stop"))
    return p


def _run(args: argparse.Namespace) -> int:
    settings = args.cmd == "query" and load_snapshot(args.policy)
    if not settings:  # pydantic and PyYAML (~80 ms CPU): a query reads the snapshot this saves
        from .settings import load_settings

        settings = load_settings(args.policy)
    if args.cmd == "setup-model":
        print(setup_offline_model(state_dir() / "models"))
        return 0
    if args.cmd == "db":
        if args.action == "stop":
            from .embedded import stop_server

            print("stopped" if stop_server(state_dir()) else "not running")
        else:
            print(store_url(settings))
        return 0
    if args.cmd in ("code", "docs"):
        store = Store(store_url(settings), settings.store.connect_timeout_s)
        embedder = Embedder(embedding_spec(settings, for_query=False))
        name = args.repo if args.cmd == "code" else args.collection
        report = _index(args, store, embedder, settings, name)
        print(
            f"{report.kind} {report.name}@{report.commit or '-'}: {report.files} files, {report.indexed} indexed, "
            f"{report.unchanged} unchanged, {report.deleted} deleted; {report.chunks_written} chunks written "
            f"({report.rate()}), {report.chunks_total} in index; {report.seconds:.1f}s; model {embedder.model_id}"
        )
        return 0
    # a query's wall time is start-up: the model loads (mostly outside the GIL) while the store connects
    with ThreadPoolExecutor(1, thread_name_prefix="rag-load") as pool:
        loading = pool.submit(Embedder, embedding_spec(settings, for_query=True), fast=True, one_shot=True)
        store = Store(store_url(settings), settings.store.connect_timeout_s)
        embedder = loading.result()
    kind, name = ("code", args.repo) if args.repo else ("docs", args.collection)
    try:
        hits = Retriever(store, embedder, settings.retrieval).search(
            Query(kind, name, args.text, args.k, args.commit, tuple(args.path), args.mode)
        )
    except NotIndexed as e:
        raise IndexerError(str(e)) from e
    if args.json:
        print(json.dumps([as_dict(h) for h in hits], indent=2))
    else:
        for i, h in enumerate(hits, 1):
            c = h.chunk
            label = " ".join(x for x in (c.symbol, c.heading) if x)
            print(f"{i}. {c.cite}  score={h.rrf:.4f} dense={h.dense if h.dense is None else round(h.dense, 3)} "
                  f"fulltext={h.bm25 if h.bm25 is None else round(h.bm25, 2)}  {label}")
        if not hits:
            print("no relevant chunks")
    return 0


def _index(args, store, embedder, settings, name):
    from tqdm import tqdm

    from .indexer import index_tree  # chunkers and tree-sitter: not loaded for queries

    bar = tqdm(unit="file", disable=args.no_progress or None, desc=f"indexing {name}")
    try:
        return index_tree(
            store, embedder, settings.embedding, args.cmd, args.path, name,
            commit=getattr(args, "ref", None), reset=args.reset, base_url=getattr(args, "base_url", None),
            progress=bar.update, on_total=lambda n: setattr(bar, "total", n) or bar.refresh(),
        )
    finally:
        bar.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (StoreError, IndexerError, EmbeddingError, ConfigError) as e:
        print(f"rag-indexer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
