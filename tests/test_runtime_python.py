"""The interpreter the gateway runs on survives what crashed it on Python 3.11.

CPython 3.11 can run a garbage collection inside `ContextVar.set` (while it builds the context's new
mapping); a finaliser run by that collection that sets a context variable replaces the mapping being
built from, which is then used after it was freed (CPython gh-148891; 3.12 runs collections only between
bytecodes). LiteLLM sets and resets context variables around every Redis call and coroutines it leaves
unfinished reset theirs when collected: a gateway under load died in `ContextVar.set` on 3.11.7
(`bench/load.py`, see README "Guarantees under faults"). The project requires Python 3.12; this test
fails on an interpreter that has the bug, as 3.11.7 does here (a segfault within a second).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

REENTRANT_SET = textwrap.dedent("""
    import contextvars, gc, sys

    side = contextvars.ContextVar("side")
    pads = [contextvars.ContextVar(f"p{i}") for i in range(64)]


    class Cyclic:
        def __init__(self):
            self.me = self  # garbage only the cyclic collector frees

        def __del__(self):
            side.set(object())  # a finaliser that sets a variable of the running context


    def run(n, threshold):
        for v in pads:
            v.set(object())  # a mapping several levels deep: a set allocates several nodes
        gc.set_threshold(threshold, 1000, 1000)
        for i in range(n):
            Cyclic()
            junk = [[] for _ in range(i % threshold)]  # moves the collection to another allocation
            pads[i % 64].set(i)
        return side.get() is not None


    ok = contextvars.copy_context().run(run, int(sys.argv[1]), int(sys.argv[2]))
    print("survived" if ok else "lost the finaliser's variable")
""")


@pytest.mark.parametrize("threshold", [2, 3, 4, 6])
def test_context_variable_set_during_a_collection_does_not_crash(threshold):
    out = subprocess.run([sys.executable, "-c", REENTRANT_SET, "200000", str(threshold)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "survived", (
        f"Python {sys.version.split()[0]} exited {out.returncode} on a context variable set during a garbage "
        f"collection (CPython gh-148891): run the gateway on Python 3.12\n{out.stdout}{out.stderr[-1500:]}")


def test_the_suite_runs_on_a_python_the_project_admits():
    """A venv made by hand with another Python (3.11) fails here, not later under load."""
    import tomllib
    from pathlib import Path

    from packaging.specifiers import SpecifierSet

    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    admitted = SpecifierSet(meta["project"]["requires-python"])
    assert sys.version.split()[0] in admitted and "3.11.7" not in admitted, admitted
