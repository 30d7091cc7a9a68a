"""The search processes: retrieval runs in child processes, each with its own store connection and embedding
model, so the query shaping, row decoding and fusion (Python) and the query embedding (ONNX) never hold or
wait for the proxy's GIL.

The parent side is `SearchProcess` (one child, asked over a socket pair, one request at a time, with the
proxy's validated policy/rag.yaml settings); the child is `main()` (`python -P -m carrot_hooks.rag_search FD`).
Own code rather than `ProcessPoolExecutor`: its children re-run the parent's main script, which here is
LiteLLM's `litellm` command (all of LiteLLM imported into every child). A child exits when the parent's end
of the socket closes, and can be killed when it hangs, which a thread could not be.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

log = logging.getLogger("carrot.rag")

RETRY_AFTER_S = 5.0  # after a store failure, report "unavailable" without reconnecting for this long
SEARCH_TIMEOUT_S = 30.0  # an answer that takes longer means a hung child: it is killed
START_TIMEOUT_S = 300.0  # a new child's first answer may load the model and make its int8 graph first
STOP_WAIT_S = 5.0


class SearchError(Exception):
    """A search the child could not run (store down, unknown index, ...); the message is the child's."""


class SearchProcess:
    """One child process answering searches; `ask` blocks its (search) thread, not the event loop."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-P", "-m", "carrot_hooks.rag_search", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                )
            except OSError:
                ours.close()
                raise
        self.conn = Connection(ours.detach())
        self.answered = False  # a first answer may take START_TIMEOUT_S
        self._sent = None  # the settings object this child has

    def ask(self, op: str, arg, settings):
        """The child's answer to (`op`, `arg`) under `settings` (sent when they are not the ones it has).
        SearchError for a failure it reports; EOFError / OSError when it died, TimeoutError when it hung
        (then it is killed): either way this object is finished, `close` it and start another."""
        self.conn.send((op, arg, None if settings is self._sent else settings))
        self._sent = settings
        if not self.conn.poll(SEARCH_TIMEOUT_S if self.answered else START_TIMEOUT_S):
            self.proc.kill()
            raise TimeoutError(f"search process {self.proc.pid} gave no answer in time; killed")
        status, value = self.conn.recv()
        self.answered = True
        if status != "ok":
            raise SearchError(value)
        return value

    def close(self) -> None:
        self.conn.close()  # the child reads EOF and exits
        try:
            self.proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


def main(fd: int) -> None:
    """Answer (op, arg, settings or None) until the parent closes its end (Ctrl-C is the parent's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format=f"%(asctime)s %(levelname)s carrot.rag-search[{os.getpid()}]: %(message)s")
    conn = Connection(fd)
    searcher = Searcher()
    while True:
        try:
            op, arg, settings = conn.recv()
            if settings is not None:
                searcher.settings = settings
            try:
                answer = ("ok", searcher.run(op, arg))
            except Exception as e:  # noqa: BLE001 - reported to the request, which is served without context
                answer = ("error", f"{type(e).__name__}: {e}")
            conn.send(answer)
        except (EOFError, OSError):  # the parent closed its end or is gone
            return


if __name__ == "__main__":
    main(int(sys.argv[1]))
