"""The carrot-eval sandbox and scoring without a proxy: limits hold, network is off, scores name their reason."""

from __future__ import annotations

from carrot_eval import scoring
from carrot_eval.sandbox import run_python
from carrot_eval.suite import FimCase


def test_passing_program_passes():
    assert run_python("assert sum(range(4)) == 6\n").passed


def test_failure_reason_is_the_last_error_line():
    out = run_python("def f():\n    raise KeyError('x')\nf()\n")
    assert not out.passed and out.reason == "KeyError: 'x'"


def test_network_is_refused():
    out = run_python("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n")
    assert not out.passed and "network access is disabled" in out.reason


def test_endless_loop_is_stopped_by_the_timeout():
    out = run_python("while True:\n    pass\n", timeout=2)
    assert not out.passed and out.reason == "timeout after 2s"


def test_memory_limit_holds():
    out = run_python("x = bytearray(4 * 1024 ** 3)\n")
    assert not out.passed and "MemoryError" in out.reason


def test_runs_in_an_empty_temporary_directory_without_the_callers_environment():
    out = run_python("import os, sys\nassert os.listdir('.') == ['case.py'], os.listdir('.')\n"
                     "assert 'PYTHONPATH' not in os.environ and os.environ['HOME'] == os.getcwd()\n"
                     "assert os.getcwd() not in sys.path  # -I: the script's folder is not importable\n")
    assert out.passed, out.reason


def test_fim_scoring_by_span_and_parse():
    case = FimCase(id="c", task="editor", kind="fim", prefix="def f(x):\n    return ", suffix="\n", expected="x + 1")
    assert scoring.score_fim(case, "x + 1") == (True, "exact")
    assert scoring.score_fim(case, "x  +  1") == (True, "normalised")
    assert scoring.score_fim(case, "x - 1") == (False, "span differs from expected")
    assert scoring.score_fim(case, "x +") == (False, "completed file does not parse; span differs")
    js = case.model_copy(update={"language": "javascript", "prefix": "const f = (x) => ", "suffix": ";\n"})
    assert scoring.score_fim(js, "x + 1") == (True, "exact")
    assert scoring.score_fim(js, "x + (") == (False, "completed file does not parse; span differs")
