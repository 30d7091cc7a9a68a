"""Child processes that do the gateway's CPU-heavy work on their own GIL (retrieval, PII analysis), so it never
holds up the proxy's event loop. Each child is asked over a socket pair, one request at a time.

The parent side is `Child` (`python -P -m <module> FD`); the child side is `serve(fd, handler)`.
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
from multiprocessing.connection import Connection
from typing import Any, Protocol

ANSWER_TIMEOUT_S = 30.0  # an answer that takes longer means a hung child: it is killed
START_TIMEOUT_S = 300.0  # a new child's first answer may load a model (and make its int8 graph) first
STOP_WAIT_S = 5.0


class ChildError(Exception):
    """Work the child could not do (store down, unknown index, ...); the message is the child's."""


class Child:
    """One child process running `module`; `ask` blocks its (worker) thread, never the event loop."""

    def __init__(self, module: str) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            try:
                self.proc = subprocess.Popen([sys.executable, "-P", "-m", module, str(theirs.fileno())],
                                             pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
            except OSError:
                ours.close()
                raise
        self.conn = Connection(ours.detach())
        self.answered = False  # a first answer may take START_TIMEOUT_S
        self._sent = None  # the settings object this child has

    def ask(self, op: str, arg, settings):
        """The child's answer to (`op`, `arg`) under `settings` (sent when they are not the ones it has).
        ChildError for a failure it reports; EOFError / OSError when it died, TimeoutError when it hung
        (then it is killed): either way this object is finished, `close` it and start another."""
        self.send(op, arg, settings)
        return self.answer()

    def send(self, op: str, arg, settings) -> None:
        """The first half of `ask`: several children can then work at once."""
        self.conn.send((op, arg, None if settings is self._sent else settings))
        self._sent = settings

    def answer(self):
        """The second half of `ask`."""
        if not self.conn.poll(ANSWER_TIMEOUT_S if self.answered else START_TIMEOUT_S):
            self.proc.kill()
            raise TimeoutError(f"child process {self.proc.pid} gave no answer in time; killed")
        status, value = self.conn.recv()
        self.answered = True
        if status != "ok":
            raise ChildError(value)
        return value

    def close(self) -> None:
        self.conn.close()  # the child reads EOF and exits
        try:
            self.proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Handler(Protocol):
    """What a child serves: the parent's settings (set before `run` when they changed) and its operations."""

    settings: Any

    def run(self, op: str, arg) -> Any: ...


def serve(fd: int, handler: Handler, name: str) -> None:
    """Answer (op, arg, settings or None) until the parent closes its end (Ctrl-C is the parent's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING,
                        format=f"%(asctime)s %(levelname)s carrot.{name}[{os.getpid()}]: %(message)s")
    conn = Connection(fd)
    while True:
        try:
            op, arg, settings = conn.recv()
            if settings is not None:
                handler.settings = settings
            try:
                answer = ("ok", handler.run(op, arg))
            except Exception as e:  # noqa: BLE001 - reported to the request, whose stage decides what follows
                answer = ("error", f"{type(e).__name__}: {e}")
            conn.send(answer)
        except (EOFError, OSError):  # the parent closed its end or is gone
            return
