"""The search processes: retrieval runs in child processes (`children`), each with its own store connection and
embedding model, so the query shaping, row decoding and fusion (Python) and the query embedding (ONNX) never
hold or wait for the proxy's GIL. The parent side is `rag._Engine`; this module is the child
(`python -P -m carrot_hooks.rag_search FD`).
"""

from __future__ import annotations

import logging
import sys
import time

from .children import serve

log = logging.getLogger("carrot.rag")

RETRY_AFTER_S = 5.0  # after a store failure, report "unavailable" without reconnecting for this long


class Searcher:
    """The child's warm retriever (store connection + embedding model), rebuilt after a broken connection."""

    def __init__(self) -> None:
        self.settings = None  # RagSettings, from the parent
        self._embedder = None
        self._retriever = None
        self._failed_at = 0.0

    def retriever(self):
        from rag_indexer.embedding import Embedder
        from rag_indexer.quick_settings import embedding_spec, store_url
        from rag_indexer.retrieve import Retriever
        from rag_indexer.store import Store

        if self._retriever is None:
            if time.monotonic() - self._failed_at < RETRY_AFTER_S:
                raise ConnectionError("vector store failed recently; retrying shortly")
            if self._embedder is None:
                self._embedder = Embedder(embedding_spec(self.settings), fast=True)
            try:
                store = Store(store_url(self.settings), self.settings.store.connect_timeout_s)
            except Exception:
                self._failed_at = time.monotonic()
                raise
            self._retriever = Retriever(store, self._embedder, self.settings.retrieval)
        self._retriever.cfg = self.settings.retrieval
        return self._retriever

    def search(self, query):
        """One query. A broken connection (the server restarted since the last search) is replaced once at
        once; if that fails too, the store is down: remembered for RETRY_AFTER_S so requests meanwhile answer
        without context instead of waiting on connects."""
        for retry in (False, True):
            retriever = self.retriever()
            try:
                return retriever.search(query)
            except Exception:
                if not (retriever.store.conn.closed or retriever.store.conn.broken):
                    raise
                self._retriever = None
                log.warning("vector store connection broken: %s",
                            "reconnect failed too, answering without context" if retry else "reconnecting")
                if retry:
                    self._failed_at = time.monotonic()
                    raise

    def hits_or_missing(self, query):
        """`search`, with an index that is not there (or holds another commit) as its `NotIndexed` error."""
        from rag_indexer.retrieve import NotIndexed

        try:
            return self.search(query)
        except NotIndexed as e:
            return e

    def run(self, op: str, arg):
        if op == "search":
            return [self.hits_or_missing(q) for q in arg]
        if op == "warm":  # load the model and connect now
            self.retriever()
            return None
        raise ValueError(f"unknown operation {op!r}")


if __name__ == "__main__":
    serve(int(sys.argv[1]), Searcher(), "rag-search")
