"""`carrot-review`: linters gate, the model advises; Markdown to stdout, SARIF/JSON files, a GitHub review."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from carrot_review import lint, report
from carrot_review.diff import Diff, git_diff, parse_diff
from carrot_review.errors import InputError
from carrot_review.findings import SEVERITY_RANK
from carrot_review.github import DEFAULT_API, GitHub, PullRef
from carrot_review.review import Outcome, run_linters, run_model
from carrot_review.sarif import sarif

DEFAULT_MODEL = "carrot-ci"  # the gateway's virtual model for X-Task-Type: ci


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carrot-review", description=__doc__)
    src = p.add_argument_group("input (one of; stdin when none is given)")
    src.add_argument("--diff", metavar="FILE", help="unified diff file ('-' for stdin)")
    src.add_argument("--base", metavar="REF", help="git ref to diff from (merge base with --head)")
    src.add_argument("--head", metavar="REF", help="git ref to diff to (default HEAD)")
    src.add_argument("--github-pr", metavar="OWNER/REPO#N",
                     help="review this pull request (GITHUB_TOKEN); its diff is fetched unless given above")
    p.add_argument("--github-api", default=os.environ.get("GITHUB_API_URL") or DEFAULT_API,
                   help="GitHub REST base URL, e.g. https://ghe.example.com/api/v3 (env GITHUB_API_URL)")
    p.add_argument("--no-post", action="store_true", help="with --github-pr: print, do not post a review")
    p.add_argument("--repo-dir", default=".", type=Path, help="checkout to run git and linters in")
    gw = p.add_argument_group("model (through the Carrot gateway)")
    gw.add_argument("--model", default=os.environ.get("CARROT_REVIEW_MODEL", DEFAULT_MODEL))
    gw.add_argument("--no-model", action="store_true", help="run the linters only")
    gw.add_argument("--model-optional", action="store_true",
                    help="a rejected key, unknown model or unreachable gateway is a note in the report "
                         "instead of exit 2")
    gw.add_argument("--no-cache", action="store_true", help="bypass the gateway's result cache")
    gw.add_argument("--budget", type=int, default=3000, help="max diff tokens per model request")
    gw.add_argument("--max-requests", type=int, default=20, help="max model requests per run")
    gw.add_argument("--timeout", type=float, default=180.0,
                    help="seconds to wait for a model reply (connecting: 10 s); a request that times out "
                         "or cannot connect on its retry too ends the model review")
    lt = p.add_argument_group("linters (they gate the exit code)")
    lt.add_argument("--lint", action="append", default=[], metavar="[LANG=]CMD",
                    help="lint command; {files} is replaced by the changed files; LANG= replaces "
                         "that language's default; a plain CMD replaces all defaults (repeatable)")
    lt.add_argument("--no-default-lint", action="store_true", help="no default linter per language")
    lt.add_argument("--lint-timeout", type=float, default=600.0)
    p.add_argument("--fail-on", choices=sorted(SEVERITY_RANK, key=SEVERITY_RANK.get),
                   help="also fail when a model finding has at least this severity")
    p.add_argument("--sarif", metavar="FILE", type=Path, help="write a SARIF 2.1.0 log")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="write the JSON report to FILE (stdout, in place of Markdown, when no FILE)")
    return p


def _read_diff(args: argparse.Namespace, gh: GitHub | None, pr: PullRef | None) -> str:
    if args.diff and args.base:
        raise InputError("give either --diff or --base/--head, not both")
    if args.diff and args.diff != "-":
        try:
            return Path(args.diff).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"--diff {args.diff}: {exc.strerror}") from None
    if args.base:
        return git_diff(args.base, args.head or "HEAD", cwd=args.repo_dir)
    if args.head:
        raise InputError("--head needs --base")
    if gh and pr and args.diff != "-":
        return gh.diff(pr)
    if args.diff != "-" and sys.stdin.isatty():
        raise InputError("no diff: give --diff FILE, --base REF, --github-pr OWNER/REPO#N, or pipe a diff in")
    return sys.stdin.read()


def _gateway_client(timeout: float):
    import openai  # imported here: linters-only runs do not need it

    if not os.environ.get("OPENAI_BASE_URL"):
        raise InputError("OPENAI_BASE_URL is not set: point it at the Carrot gateway, e.g. https://gateway/v1")
    if not os.environ.get("OPENAI_API_KEY"):
        raise InputError("OPENAI_API_KEY is not set: use a gateway key")
    # a gateway that does not accept the connection fails fast; model.FATAL_ERRORS counts on max_retries=1
    return openai.OpenAI(timeout=openai.Timeout(timeout, connect=10.0), max_retries=1)


def review(args: argparse.Namespace) -> int:
    """Run one review; return the exit code (0 pass, 1 gate failed)."""
    for name in ("budget", "max_requests"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    specs = [lint.parse_lint_option(v) for v in args.lint]
    client = None if args.no_model else _gateway_client(args.timeout)
    pr = PullRef.parse(args.github_pr) if args.github_pr else None
    gh = GitHub(os.environ.get("GITHUB_TOKEN", ""), args.github_api) if pr else None
    try:
        head = gh.head_sha(pr) if gh else None
        diff: Diff = parse_diff(_read_diff(args, gh, pr))
        outcome = Outcome(diff, fail_on=args.fail_on)
        run_linters(outcome, specs, not args.no_default_lint, args.repo_dir.resolve(), args.lint_timeout)
        if client and diff.reviewed:
            from carrot_review.model import ModelReviewer
            from carrot_review.packing import fits_one_request
            from carrot_review.tokens import counter, utf8_size

            reviewer = ModelReviewer(client, args.model, use_cache=not args.no_cache)
            # a diff that fits by its bytes skips loading the exact counter (the tokenizer file: ~0.3 s)
            count = utf8_size if fits_one_request(diff, args.budget) else counter()
            run_model(outcome, reviewer, args.budget, args.max_requests, count)
            unusable = next((c.error for c in outcome.chunks if c.unusable), None)
            if unusable and not args.model_optional:
                raise InputError(f"model review impossible ({' '.join(unusable.split())[:300]}); check "
                                 f"OPENAI_BASE_URL, OPENAI_API_KEY and --model {args.model}, or pass --model-optional")
        _warn_nothing_linted(outcome, args.repo_dir)
        summary = report.markdown(outcome)
        _write_outputs(args, outcome, summary)
        if gh and not args.no_post:
            _publish(gh, pr, head, outcome, summary)
    finally:
        if gh:
            gh.close()
    return outcome.exit_code


def _warn_nothing_linted(outcome: Outcome, repo_dir: Path) -> None:
    """Changed files none of which exist under --repo-dir: probably run from the wrong folder."""
    changed = [f.path for f in outcome.diff.reviewed]
    if outcome.nothing_linted:
        print(f"carrot-review: warning: 0 files linted: none of the {len(changed)} changed file(s) "
              f"(e.g. {changed[0]}) exists under {repo_dir.resolve()}; run from the repository root "
              "or pass --repo-dir", file=sys.stderr)


def _write_outputs(args: argparse.Namespace, outcome: Outcome, summary: str) -> None:
    if args.sarif:
        args.sarif.write_text(sarif(outcome), encoding="utf-8")
    if args.json and args.json != "-":
        Path(args.json).write_text(report.as_json(outcome), encoding="utf-8")
    sys.stdout.write(report.as_json(outcome) + "\n" if args.json == "-" else summary)


def _publish(gh: GitHub, pr: PullRef, head: str, outcome: Outcome, summary: str) -> None:
    if gh.already_reviewed(pr, head):
        print(f"carrot-review: {pr.owner}/{pr.repo}#{pr.number} already reviewed at {head[:12]}; not posting again",
              file=sys.stderr)
        return
    commentable = outcome.diff.commentable()
    inline = outcome.model_findings + [f for f in outcome.lint_findings if f.line in commentable.get(f.file, ())]
    posted, placed = gh.post_review(pr, head, summary, inline)
    print(f"carrot-review: posted review {posted.get('id')} with {placed} inline comment(s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return review(args)
    except InputError as exc:
        print(f"carrot-review: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line and exit 3, never read as a failed gate (1)
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"carrot-review: internal error: {detail}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
