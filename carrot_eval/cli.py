"""`carrot-eval`: evaluate pins, virtual models or prompt-pack versions through the gateway against a baseline.

    carrot-eval --baseline ds-coder-v2@2025-09-23 ds-coder-v2@2025-11-30 chat@v2 --suite evals --max-regression 0.05

Exit status: 0, 1 when a target is worse than the baseline by more than --max-regression, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .runner import evaluate
from .suite import SuiteError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carrot-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("targets", nargs="+", help="pinned alias, alias, virtual model (carrot-chat), pack (chat@v2), or model+pack")
    p.add_argument("--baseline", help="target the others are compared with (run too)")
    p.add_argument("--suite", action="append", default=None, help="suite file or folder (repeatable; default evals/)")
    p.add_argument("--task", action="append", help="only these task types (repeatable)")
    p.add_argument("--limit", type=int, help="at most N cases per task type")
    p.add_argument("--url", default=os.environ.get("CARROT_URL", "http://127.0.0.1:4000"), help="gateway base URL")
    p.add_argument("--key-env", default="CARROT_API_KEY",
                   help="environment variable holding the API key (default CARROT_API_KEY, then LITELLM_MASTER_KEY); "
                        "pack targets need an admin key")
    p.add_argument("--max-regression", type=float, default=0.05, help="allowed pass-rate drop vs the baseline (0.05 = 5 points)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the JSON report (to stdout without FILE)")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown report")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    key = os.environ.get(args.key_env) or os.environ.get("LITELLM_MASTER_KEY")
    if not key:
        print(f"carrot-eval: error: set {args.key_env} (or LITELLM_MASTER_KEY) to a gateway API key", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=args.json == "-")
    try:
        with Progress(console=console, disable=args.no_progress, transient=True) as bar:
            job = bar.add_task("evaluating", total=None)
            report = evaluate(args.url, key, args.targets, args.suite or ["evals"], baseline=args.baseline,
                              tasks=set(args.task) if args.task else None, limit=args.limit,
                              concurrency=args.concurrency, timeout=args.timeout,
                              progress=lambda done, total: bar.update(job, completed=done, total=total))
    except (SuiteError, ValueError) as e:
        print(f"carrot-eval: error: {e}", file=sys.stderr)
        return 2
    console.print(report.table())
    if args.json == "-":
        print(json.dumps(report.to_json(), indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(), encoding="utf-8")
    regressions = report.regressions(args.max_regression) if args.baseline else []
    for line in regressions:
        console.print(f"[red]regression[/red] {line}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
