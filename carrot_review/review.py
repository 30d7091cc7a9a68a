"""One review run: linters gate, the model advises; the outcome every output format renders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from carrot_review import lint
from carrot_review.diff import Diff
from carrot_review.findings import SEVERITY_RANK, Finding, dedupe, in_diff
from carrot_review.packing import pack

if TYPE_CHECKING:  # the model module imports openai (~0.7 s): linters-only runs never load it
    from carrot_review.model import ChunkResult, ModelReviewer


@dataclass
class Outcome:
    diff: Diff
    lint_results: list[lint.LintResult] = field(default_factory=list)
    chunks: list[ChunkResult] = field(default_factory=list)
    model_findings: list[Finding] = field(default_factory=list)
    dropped_outside_diff: int = 0
    invalid_items: int = 0
    not_reviewed: list[str] = field(default_factory=list)  # files beyond --max-requests or a fatal gateway error
    fail_on: str | None = None

    @property
    def lint_findings(self) -> list[Finding]:
        return dedupe(f for r in self.lint_results for f in r.findings)

    @property
    def nothing_linted(self) -> bool:
        """Linters were planned but none of the changed files was on disk (wrong folder?)."""
        return bool(self.lint_results) and not any(r.files for r in self.lint_results)

    @property
    def lint_failed(self) -> bool:
        return any(r.failed for r in self.lint_results)

    @property
    def model_failed(self) -> bool:
        """Model findings fail the build only at or above `--fail-on`."""
        if self.fail_on is None:
            return False
        return any(SEVERITY_RANK[f.severity] >= SEVERITY_RANK[self.fail_on] for f in self.model_findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.lint_failed or self.model_failed else 0

    @property
    def served_by(self) -> list[str]:
        """Distinct gateway routes (model · prompt pack) that answered."""
        return sorted({c.served_by for c in self.chunks if c.served_by})

    @property
    def problems(self) -> list[str]:
        """Chunks the model could not review (gateway errors, malformed output)."""
        return [f"{', '.join(c.files)}: {c.error}" for c in self.chunks if c.error]


def run_linters(outcome: Outcome, specs: list[lint.LintSpec], use_defaults: bool, cwd: Path, timeout: float) -> None:
    changed = [f.path for f in outcome.diff.reviewed]
    outcome.lint_results = lint.run_all(lint.plan(changed, specs, use_defaults), cwd, timeout)


def run_model(outcome: Outcome, reviewer: ModelReviewer, budget: int, max_requests: int,
              count: Callable[[str], int]) -> None:
    chunks = pack(outcome.diff, budget, count)
    for i, chunk in enumerate(chunks):
        if i >= max_requests or (outcome.chunks and outcome.chunks[-1].fatal):
            outcome.not_reviewed.extend(chunk.files)
        else:
            outcome.chunks.append(reviewer.review(chunk))
    found = [f for c in outcome.chunks for f in c.findings]
    kept, outcome.dropped_outside_diff = in_diff(found, outcome.diff.commentable())
    outcome.model_findings = dedupe(kept)
    outcome.invalid_items = sum(c.invalid_items for c in outcome.chunks)
    outcome.not_reviewed = sorted(set(outcome.not_reviewed))
