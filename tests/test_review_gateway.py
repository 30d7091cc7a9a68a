"""carrot-review end to end: the real LiteLLM proxy with our config, the fake upstream returning
canned review JSON, a fake GitHub API recording the one posted review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrot_hooks.prompts import load_pack
from carrot_review.model import INSTRUCTIONS, RETRY_NOTE
from tests.fake_upstream import Reply
from tests.review_support import ROOT, FakeGitHub, git, make_repo, run_bot

SMALL = "deepseek-coder:6.7b-instruct-q4_K_M"  # what ds-coder-6.7b (the ci route) calls upstream
CI_PACK = load_pack(ROOT / "prompts" / "ci_review@v1.md").body


@pytest.fixture
def repo(tmp_path: Path, marker: str) -> Path:
    """A lint-clean change whose text carries the test's marker, so upstream requests can be found."""
    return make_repo(tmp_path / "repo", {"calc.py": f'"""Calculator {marker}."""\n\n\ndef add(a, b):\n    return a + b\n'}, {
        "calc.py": f'"""Calculator {marker}."""\n\n\ndef add(a, b):\n    return a - b\n\n\ndef half(x):\n    return x / 0\n',
        "notes/readme.md": f"# Notes {marker}\n\nSee calc.py.\n",
        "poetry.lock": "[[package]]\nname = 'x'\n",
    })


@pytest.fixture
def github(repo: Path):
    fake = FakeGitHub("octo", "calc", 3, git(repo, "rev-parse", "feature"), git(repo, "diff", "main...feature") + "\n")
    yield fake
    fake.close()


def bot(repo: Path, proxy, github: FakeGitHub | None, *args: str):
    env = {"OPENAI_BASE_URL": f"{proxy.base_url}/v1", "OPENAI_API_KEY": proxy.master_key}
    gh = ["--github-pr", github.pr] if github else []
    if github:
        env |= {"GITHUB_TOKEN": github.token, "GITHUB_API_URL": github.api_url}
    return run_bot("--base", "main", "--head", "feature", *gh, *args, cwd=repo, env=env)


def findings(*items: dict) -> str:
    return json.dumps({"findings": list(items)})


SUBTRACT = {"file": "calc.py", "line": 5, "severity": "error", "message": "add() subtracts: returns a - b.",
            "suggestion": "return a + b"}
DIV_ZERO = {"file": "calc.py", "line": 9, "severity": "warning", "message": "Division by zero always raises."}


def test_review_through_gateway_posts_one_review_with_inline_comments(proxy, fake_upstream, marker, repo, github):
    fake_upstream.script(Reply(match=marker, content=findings(
        SUBTRACT, DIV_ZERO,
        {**SUBTRACT, "message": "ADD() subtracts:  returns a - b."},  # duplicate of the first
        {"file": "calc.py", "line": 42, "severity": "error", "message": "outside the diff"},
        {"file": "other.py", "line": 1, "severity": "error", "message": "file not in the diff"},
        {"file": "calc.py", "severity": "error", "message": "no line"},
    )))
    out = bot(repo, proxy, github, "--model", "auto", "--json")
    assert out.returncode == 0, out.stderr  # linters pass; model findings only advise
    doc = json.loads(out.stdout)
    got = [(f["file"], f["line"], f["severity"], f["message"]) for f in doc["model"]["findings"]]
    assert got == [("calc.py", 5, "error", SUBTRACT["message"]), ("calc.py", 9, "warning", DIV_ZERO["message"])]
    assert doc["model"]["dropped_outside_diff"] == 2 and doc["model"]["invalid_items"] == 1
    assert doc["model"]["requests"] == 1 and doc["model"]["problems"] == []
    assert doc["model"]["served_by"] == ["ds-coder-6.7b · ci_review@v1"]  # the gateway's x-carrot-* headers

    (up,) = fake_upstream.find(marker)  # routed by X-Task-Type: ci although the model field says "auto"
    assert up.path == "/api/chat" and up.json["model"] == SMALL
    system, user = up.json["messages"]
    assert (system["role"], system["content"]) == ("system", CI_PACK)
    assert "### calc.py" in user["content"] and "    5 +     return a - b" in user["content"]
    assert "### notes/readme.md" in user["content"] and "poetry.lock" not in user["content"]

    (review,) = github.reviews
    assert review["commit_id"] == github.head_sha
    assert [(c["path"], c["line"], c["side"]) for c in review["comments"]] == [("calc.py", 5, "RIGHT"), ("calc.py", 9, "RIGHT")]
    assert review["comments"][0]["body"].startswith("**error** (model): add() subtracts")
    assert "return a + b" in review["comments"][0]["body"]
    assert "2 model finding(s) dropped: they point outside the diff" in review["body"]
    assert "2 finding(s) from ds-coder-6.7b · ci_review@v1" in review["body"]

    fake_upstream.script(Reply(match=marker, content=findings(SUBTRACT)))
    again = bot(repo, proxy, github, "--model", "auto")
    assert again.returncode == 0 and "already reviewed" in again.stderr
    assert len(github.reviews) == 1 and len(github.posted) == 1


def test_fail_on_lets_model_findings_fail_the_build(proxy, fake_upstream, marker, repo):
    fake_upstream.script(Reply(match=marker, content=findings(DIV_ZERO), times=2))
    assert bot(repo, proxy, None, "--fail-on", "error").returncode == 0  # a warning is below `error`
    out = bot(repo, proxy, None, "--fail-on", "warning")
    assert out.returncode == 1, out.stderr
    assert "build fails on model findings ≥ `warning`" in out.stdout


def test_malformed_reply_is_retried_once(proxy, fake_upstream, marker, repo):
    fake_upstream.script(Reply(match=marker, content="The code looks mostly fine, but add() is wrong."),
                         Reply(match=marker, content=f"```json\n{findings(SUBTRACT)}\n```"))
    out = bot(repo, proxy, None, "--json")
    doc = json.loads(out.stdout)
    assert [(f["file"], f["line"]) for f in doc["model"]["findings"]] == [("calc.py", 5)]
    _first, second = fake_upstream.find(marker)
    retry = second.json["messages"][-2]
    assert (retry["role"], retry["content"]) == ("assistant", "The code looks mostly fine, but add() is wrong.")
    assert second.json["messages"][-1]["content"] == RETRY_NOTE
    assert second.json["messages"][0]["content"] == CI_PACK


def test_malformed_twice_is_reported_not_fatal(proxy, fake_upstream, marker, repo, github):
    fake_upstream.script(Reply(match=marker, content="no json here", times=2))
    out = bot(repo, proxy, github)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "malformed model output after 2 attempt(s): reply is not JSON" in out.stdout
    assert len(fake_upstream.find(marker)) == 2
    (review,) = github.reviews  # the lint results and the problem are still posted
    assert review["comments"] == [] and "malformed model output" in review["body"]


def test_upstream_failure_is_reported_not_fatal(proxy, fake_upstream, marker, repo):
    fake_upstream.script(Reply(match=marker, status=500, times=0))
    out = bot(repo, proxy, None, "--json", "--sarif", str(repo / "r.sarif"))
    assert out.returncode == 0, out.stderr
    (problem,) = json.loads(out.stdout)["model"]["problems"]
    assert "gateway error: HTTP 5" in problem
    assert json.loads((repo / "r.sarif").read_text())["runs"][-1]["results"] == []


def test_small_budget_splits_the_diff_across_requests(proxy, fake_upstream, marker, repo):
    big = "".join(f"def f{i}(x):\n    return x + {i}  # {marker}\n\n\n" for i in range(60))
    (repo / "big.py").write_text(big)
    git(repo, "add", "big.py")
    git(repo, "commit", "-q", "-m", "big")
    fake_upstream.script(Reply(match=marker, content=findings({**DIV_ZERO, "file": "big.py", "line": 2}), times=0))
    out = bot(repo, proxy, None, "--budget", "400", "--json")
    doc = json.loads(out.stdout)
    reqs = fake_upstream.find(marker)
    assert doc["model"]["requests"] == len(reqs) > 3
    sent = "\n".join(r.json["messages"][-1]["content"] for r in reqs)
    assert all(f"return x + {i}  # {marker}" in sent for i in range(60))
    assert all(r.json["model"] == SMALL and r.json["messages"][0]["content"] == CI_PACK for r in reqs)
    assert doc["model"]["findings"][0]["file"] == "big.py"  # duplicates across requests collapse to one
    assert len(doc["model"]["findings"]) == 1


def test_real_diff_from_this_repository_fetched_from_github(proxy, fake_upstream, tmp_path):
    """The commit that added carrot_review/ is the pull request; its diff comes from the GitHub API."""
    sha = git(ROOT, "log", "--diff-filter=A", "--format=%H", "--", "carrot_review/diff.py").split()[-1]
    fake = FakeGitHub("carrot", "gateway", 6, sha, git(ROOT, "diff", f"{sha}^", sha) + "\n")
    try:
        fake_upstream.script(Reply(match=INSTRUCTIONS, times=3, content=findings(
            {"file": "carrot_review/diff.py", "line": 1, "severity": "note", "message": "Docstring could name unidiff's limits."},
            {"file": "carrot_review/diff.py", "line": 100000, "severity": "error", "message": "beyond the file"})))
        before = len(fake_upstream.requests)
        out = run_bot("--github-pr", fake.pr, "--no-default-lint", "--budget", "1500", "--max-requests", "3", "--json",
                      "--no-cache",  # the same real diff is sent on every run: the gateway's cache must not answer
                      cwd=tmp_path, env={"OPENAI_BASE_URL": f"{proxy.base_url}/v1", "OPENAI_API_KEY": proxy.master_key,
                                         "GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.api_url})
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        sent = fake_upstream.requests[before:]
        assert doc["model"]["requests"] == len(sent) == 3
        assert doc["model"]["not_reviewed"]  # the rest of the diff is over --max-requests
        assert all(r.json["model"] == SMALL and r.json["messages"][0]["content"] == CI_PACK for r in sent)
        assert all("### carrot_review/" in r.json["messages"][-1]["content"] for r in sent)
        assert doc["model"]["dropped_outside_diff"] == 3
        assert [(f["file"], f["line"]) for f in doc["model"]["findings"]] == [("carrot_review/diff.py", 1)]
        (review,) = fake.reviews
        assert [(c["path"], c["line"]) for c in review["comments"]] == [("carrot_review/diff.py", 1)]
        assert review["commit_id"] == sha
    finally:
        fake.close()


def test_rejected_key_stops_after_one_request(proxy, fake_upstream, marker, repo):
    (repo / "big.py").write_text("".join(f"def g{i}(x):\n    return x * {i}  # {marker}\n\n\n" for i in range(40)))
    git(repo, "add", "big.py")
    git(repo, "commit", "-q", "-m", "big")
    env = {"OPENAI_BASE_URL": f"{proxy.base_url}/v1", "OPENAI_API_KEY": "sk-not-a-gateway-key"}
    out = run_bot("--base", "main", "--head", "feature", "--budget", "200", "--json", cwd=repo, env=env)
    assert out.returncode == 2 and out.stdout == "", out.stderr  # a wrong key is not a passed review
    (line,) = out.stderr.strip().splitlines()
    assert "model review impossible (gateway error: HTTP 401" in line and "OPENAI_API_KEY" in line
    out = run_bot("--base", "main", "--head", "feature", "--budget", "200", "--json", "--model-optional",
                  cwd=repo, env=env)
    assert out.returncode == 0, out.stderr  # the linters passed; the model only advises
    doc = json.loads(out.stdout)
    (problem,) = doc["model"]["problems"]
    assert "gateway error: HTTP 401" in problem
    assert doc["model"]["requests"] == 1 and "big.py" in doc["model"]["not_reviewed"]
    assert fake_upstream.find(marker) == []


def test_unknown_model_is_exit_2_naming_it(proxy, fake_upstream, marker, repo):
    out = run_bot("--base", "main", "--head", "feature", "--model", "ds-coder-v2@1999-01-01", cwd=repo,
                  env={"OPENAI_BASE_URL": f"{proxy.base_url}/v1", "OPENAI_API_KEY": proxy.master_key})
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "model review impossible (gateway error: HTTP 400" in line and "pinned" in line
    assert "--model ds-coder-v2@1999-01-01" in line
