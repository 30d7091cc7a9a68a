"""The child processes (carrot_hooks/children.py), run as the search process (carrot_hooks/rag_search.py) and the
PII process: errors they report, a death and a hang seen by the parent, the settings they are sent."""

from __future__ import annotations

import os
import signal

import pytest

from carrot_hooks import children
from carrot_hooks.children import Child, ChildError
from carrot_hooks.rag import SEARCH_MODULE
from rag_indexer.settings import RagSettings


@pytest.fixture
def child():
    p = Child(SEARCH_MODULE)
    yield p
    p.close()


def test_an_error_is_reported_and_the_process_answers_on(child):
    settings = RagSettings()
    for _ in range(2):
        with pytest.raises(ChildError, match="unknown operation 'nope'"):
            child.ask("nope", None, settings)
    assert child.proc.poll() is None and child.answered
    child.close()
    assert child.proc.returncode == 0  # EOF on its socket: it exits by itself


def test_a_killed_process_is_seen_as_ended(child):
    with pytest.raises(ChildError):
        child.ask("nope", None, RagSettings())
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait(10)
    with pytest.raises((EOFError, OSError)):
        child.ask("nope", None, RagSettings())


def test_a_hung_process_is_killed(child, monkeypatch):
    monkeypatch.setattr(children, "START_TIMEOUT_S", 0.5)
    os.kill(child.proc.pid, signal.SIGSTOP)
    with pytest.raises(TimeoutError, match="killed"):
        child.ask("nope", None, RagSettings())
    assert child.proc.wait(10) == -signal.SIGKILL


def test_settings_are_sent_once_per_version():
    """The child runs under the proxy's validated settings; an unchanged settings object is not sent again."""
    sent = []

    class Recording(Child):
        def __init__(self):
            super().__init__(SEARCH_MODULE)
            real = self.conn.send
            self.conn.send = lambda msg: (sent.append(msg[2]), real(msg))

    p = Recording()
    try:
        first, second = RagSettings(), RagSettings(retrieval={"top_k": 5})
        for s in (first, first, second):
            with pytest.raises(ChildError):
                p.ask("nope", None, s)
    finally:
        p.close()
    assert sent == [first, None, second]
