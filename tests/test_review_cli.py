"""carrot-review as a process: inputs, linters gate, output formats, and a review on a fake GitHub API."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.review_support import ROOT, FakeGitHub, git, make_repo, run_bot


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """`feature` adds a lint error (unused import) to app.py, a clean util.py and a lock file."""
    return make_repo(tmp_path, {"app.py": "def add(a, b):\n    return a + b\n"}, {
        "app.py": "import os\n\n\ndef add(a, b):\n    return a - b\n",
        "util.py": "def twice(x):\n    return 2 * x\n",
        "poetry.lock": "[[package]]\nname = 'x'\n",
    })


def test_console_script_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["carrot-review"] == "carrot_review.cli:main"
    assert "carrot_review*" in meta["tool"]["setuptools"]["packages"]["find"]["include"]


def test_installed_console_script_runs():
    script = Path(sys.executable).parent / "carrot-review"
    if not script.exists():
        pytest.skip("package not installed in this environment (`make setup` installs it)")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "--github-pr" in out.stdout


def test_git_refs_lint_failure_gates_with_markdown_summary(repo):
    out = run_bot("--base", "main", "--head", "feature", "--no-model", cwd=repo)
    assert out.returncode == 1, out.stderr
    assert "**Linters (gate): failed**" in out.stdout
    assert "- `app.py:1` **error** `F401` `os` imported but unused (ruff)" in out.stdout
    assert "skipped `poetry.lock`: lock file" in out.stdout
    assert "| 2 | ❌ exit 1 |" in out.stdout  # app.py and util.py were linted, not the lock file


def test_clean_change_passes_and_stdin_diff_works(repo):
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n")
    diff = git(repo, "diff", "main", "--", "util.py", "app.py") + "\n"
    out = run_bot("--no-model", cwd=repo, stdin=diff)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "**Linters (gate): passed**" in out.stdout


def test_explicit_lint_command_decides_the_exit_code(repo):
    ok = run_bot("--base", "main", "--no-model", "--lint", f"{sys.executable} -c pass", cwd=repo)
    assert ok.returncode == 0, ok.stdout  # the plain command replaced the ruff default
    bad = run_bot("--base", "main", "--no-model", "--lint", "python=ruff check --select F821 {files}",
                  "--lint", f"{sys.executable} -c 'raise SystemExit(3)'", cwd=repo)
    assert bad.returncode == 1 and "exit 3" in bad.stdout
    missing = run_bot("--base", "main", "--no-model", "--lint", "no-such-linter-xyz {files}", cwd=repo)
    assert missing.returncode == 1 and "`no-such-linter-xyz` not found" in missing.stdout


def test_json_and_sarif_outputs(repo, tmp_path):
    sarif_path = tmp_path / "out.sarif"
    out = run_bot("--base", "main", "--no-model", "--json", "--sarif", str(sarif_path), cwd=repo)
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == out.returncode == 1
    assert doc["lint"]["failed"] is True
    assert [(f["file"], f["line"], f["rule"]) for f in doc["lint"]["findings"]] == [("app.py", 1, "F401")]
    assert doc["skipped"] == [{"path": "poetry.lock", "reason": "lock file"}]
    log = json.loads(sarif_path.read_text())
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    ruff_run = next(r for r in log["runs"] if r["tool"]["driver"]["name"] == "ruff")
    (res,) = ruff_run["results"]
    assert res["ruleId"] == "F401" and res["level"] == "error"
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "app.py"
    assert res["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
    assert {"id": "F401"} in ruff_run["tool"]["driver"]["rules"]
    json_file = tmp_path / "r.json"
    md = run_bot("--base", "main", "--no-model", "--json", str(json_file), cwd=repo)
    assert md.stdout.startswith("## carrot-review") and json.loads(json_file.read_text())["exit_code"] == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--diff", "nope.diff"], "--diff nope.diff: No such file or directory"),
    (["--base", "no-such-ref"], "git diff no-such-ref...HEAD failed"),
    (["--head", "feature"], "--head needs --base"),
    (["--diff", "-", "--base", "main"], "either --diff or --base"),
    (["--github-pr", "not-a-pr"], "expected OWNER/REPO#NUMBER"),
    (["--github-pr", "o/r#1"], "GITHUB_TOKEN is not set"),
    (["--base", "main", "--budget", "0"], "--budget must be at least 1"),
    (["--base", "main"], "OPENAI_BASE_URL is not set"),
    (["--base", "main", "--lint", "python="], "empty command for language 'python'"),
])
def test_bad_input_exits_2_naming_the_problem(repo, args, message):
    no_model = [] if "OPENAI" in message else ["--no-model"]
    out = run_bot(*args, *no_model, cwd=repo, stdin="")
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_empty_stdin_is_an_error(repo):
    out = run_bot("--no-model", cwd=repo, stdin="")
    assert out.returncode == 2 and "the diff is empty" in out.stderr


@pytest.fixture
def github(repo):
    diff = git(repo, "diff", "main...feature") + "\n"
    fake = FakeGitHub("octo", "app", 7, git(repo, "rev-parse", "feature"), diff, prefix="/api/v3")
    yield fake
    fake.close()


def gh_env(fake: FakeGitHub) -> dict[str, str]:
    return {"GITHUB_TOKEN": fake.token, "GITHUB_API_URL": fake.api_url}


def test_github_review_is_posted_once_per_head(repo, github):
    first = run_bot("--github-pr", github.pr, "--no-model", cwd=repo, env=gh_env(github))
    assert first.returncode == 1, first.stderr  # the lint gate still decides
    assert "posted review 1 with 1 inline comment(s)" in first.stderr
    diff_get = next(c for c in github.calls if c.method == "GET" and "diff" in c.headers.get("Accept", ""))
    assert diff_get.path == "/api/v3/repos/octo/app/pulls/7"  # diff fetched from the API (GHE prefix)
    (review,) = github.reviews
    assert review["commit_id"] == github.head_sha
    assert f"<!-- carrot-review head={github.head_sha} -->" in review["body"]
    assert review["body"].startswith("## carrot-review")
    assert [(c["path"], c["line"], c["side"]) for c in review["comments"]] == [("app.py", 1, "RIGHT")]
    assert "F401" in review["comments"][0]["body"]

    again = run_bot("--github-pr", github.pr, "--no-model", cwd=repo, env=gh_env(github))
    assert again.returncode == 1
    assert "already reviewed" in again.stderr
    assert len(github.reviews) == 1 and len(github.posted) == 1


def test_github_existing_reviews_are_paged_through(repo, github):
    github.reviews.extend({"id": i, "body": "someone else"} for i in range(1, 131))
    github.reviews.append({"id": 131, "body": f"old\n<!-- carrot-review head={github.head_sha} -->"})
    out = run_bot("--github-pr", github.pr, "--no-model", cwd=repo, env=gh_env(github))
    assert "already reviewed" in out.stderr and github.posted == []
    pages = [c.path for c in github.calls if c.path.endswith("/reviews")]
    assert len(pages) == 2


def test_github_new_head_gets_a_new_review_and_no_post_prints_only(repo, github):
    github.reviews.append({"id": 1, "body": "<!-- carrot-review head=0000000000000000000000000000000000000000 -->"})
    dry = run_bot("--github-pr", github.pr, "--no-model", "--no-post", cwd=repo, env=gh_env(github))
    assert dry.stdout.startswith("## carrot-review") and github.posted == []
    out = run_bot("--github-pr", github.pr, "--no-model", cwd=repo, env=gh_env(github))
    assert "posted review" in out.stderr and len(github.reviews) == 2


def test_github_bad_token_is_a_clear_error(repo, github):
    out = run_bot("--github-pr", github.pr, "--no-model", cwd=repo,
                  env={"GITHUB_TOKEN": "wrong", "GITHUB_API_URL": github.api_url})
    assert out.returncode == 2
    assert "HTTP 401: Bad credentials" in out.stderr and "Traceback" not in out.stderr


def test_github_inline_comments_are_capped(tmp_path):
    noisy = "".join(f"import json as j{i}\n" for i in range(60))
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"}, {"a.py": "x = 1\n" + noisy})
    fake = FakeGitHub("octo", "app", 8, git(repo, "rev-parse", "feature"), git(repo, "diff", "main...feature") + "\n")
    try:
        out = run_bot("--github-pr", fake.pr, "--no-model", cwd=repo, env=gh_env(fake))
        assert out.returncode == 1 and "with 50 inline comment(s)" in out.stderr
        (review,) = fake.reviews
        assert len(review["comments"]) == 50
        assert "10 more finding(s) are listed above but not posted inline" in review["body"]
        assert review["body"].count("(ruff)") == 60
    finally:
        fake.close()


def test_github_review_without_inline_comments_when_github_cannot_place_them(repo):
    # GitHub's view of the PR omits app.py's first line, so an inline comment there is a 422
    diff = git(repo, "diff", "main...feature", "--", "util.py") + "\n"
    fake = FakeGitHub("octo", "app", 9, git(repo, "rev-parse", "feature"), diff)
    try:
        out = run_bot("--github-pr", fake.pr, "--base", "main", "--head", "feature", "--no-model",
                      cwd=repo, env=gh_env(fake))
        assert out.returncode == 1 and "with 0 inline comment(s)" in out.stderr
        assert [c.json["comments"] != [] for c in fake.posted] == [True, False]
        (review,) = fake.reviews
        assert "Inline comments could not be placed" in review["body"] and "Line could not be resolved" in review["body"]
        assert "`app.py:1` **error** `F401`" in review["body"]
    finally:
        fake.close()
