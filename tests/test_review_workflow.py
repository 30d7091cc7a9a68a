"""The shipped GitHub Actions workflow is valid and calls carrot-review with options it accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from carrot_review.cli import build_parser

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "carrot-review.yml"


def review_step() -> dict:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    return next(s for s in jobs["review"]["steps"] if "carrot-review" in s.get("run", ""))


def test_workflow_matches_the_github_workflow_schema():
    check = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run([str(check), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_workflow_runs_on_pull_requests_with_review_permissions():
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert "pull_request" in doc[True]  # YAML 1.1 reads the `on` key as True
    assert doc["permissions"]["pull-requests"] == "write"
    step = review_step()
    assert step["env"]["OPENAI_BASE_URL"] == "${{ secrets.CARROT_GATEWAY_URL }}"
    assert step["env"]["OPENAI_API_KEY"] == "${{ secrets.CARROT_GATEWAY_KEY }}"
    assert "set -o pipefail" in step["run"]


def test_workflow_options_are_accepted_by_the_cli():
    run = review_step()["run"]
    (array,) = re.findall(r"args=\((.*?)\)\n", run)
    words = [w.removeprefix("$") for w in shlex.split(array)]  # "$PR" → PR
    words += [w for extra in re.findall(r"args\+=\((.*?)\)", run) for w in shlex.split(extra)]
    args = build_parser().parse_args(words)
    assert args.github_pr == "PR" and args.base == "BASE_SHA" and args.head == "HEAD_SHA"
    assert args.no_model and args.no_post and str(args.sarif) == "carrot-review.sarif"


@pytest.mark.parametrize(("actor", "from_fork", "gateway", "expect"), [
    ("octocat", "false", "https://carrot.internal/v1", []),
    ("octocat", "true", "", ["--no-model", "--no-post"]),  # forks get neither secrets nor a write token
    ("dependabot[bot]", "false", "", ["--no-model", "--no-post"]),  # Dependabot gets Dependabot secrets only
])
def test_review_step_script_picks_the_options(tmp_path, actor, from_fork, gateway, expect):
    """The step's bash script itself, run with a stand-in `carrot-review` that prints its arguments."""
    (tmp_path / "carrot-review").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (tmp_path / "carrot-review").chmod(0o755)
    step = review_step()
    assert step["env"]["ACTOR"] == "${{ github.actor }}"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
           "OPENAI_BASE_URL": gateway, "OPENAI_API_KEY": "k", "GITHUB_TOKEN": "t",
           "PR": "octo/app#7", "BASE_SHA": "b" * 40, "HEAD_SHA": "h" * 40, "FROM_FORK": from_fork, "ACTOR": actor}
    out = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    args = out.stdout.splitlines()
    assert args[:7] == ["--github-pr", "octo/app#7", "--base", "b" * 40, "--head", "h" * 40, "--sarif"]
    assert [a for a in args if a in ("--no-model", "--no-post")] == expect
    assert (tmp_path / "summary.md").read_text() == out.stdout  # tee'd to the job summary
