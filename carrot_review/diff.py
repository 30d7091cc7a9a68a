"""Unified diff → reviewable files and hunks, with new-side line numbers (parsing by `unidiff`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from carrot_review.errors import InputError
from carrot_review.skip import skip_reason


@dataclass(frozen=True)
class DiffLine:
    """One hunk line: `kind` is '+', '-' or ' '; `new_line` is its line number on the new side (None for '-')."""

    kind: str
    new_line: int | None
    text: str


@dataclass(frozen=True)
class Hunk:
    path: str
    header: str
    lines: tuple[DiffLine, ...]

    @property
    def new_lines(self) -> frozenset[int]:
        """New-side lines a review comment may point at (added and context lines)."""
        return frozenset(ln.new_line for ln in self.lines if ln.new_line is not None)


@dataclass(frozen=True)
class FileDiff:
    path: str
    hunks: tuple[Hunk, ...]
    skipped: str | None = None  # reason the file is not reviewed, e.g. "lock file"


@dataclass(frozen=True)
class Diff:
    files: tuple[FileDiff, ...]

    @property
    def reviewed(self) -> tuple[FileDiff, ...]:
        return tuple(f for f in self.files if f.skipped is None)

    def commentable(self) -> dict[str, frozenset[int]]:
        """path → new-side lines present in the diff, for reviewed files."""
        return {f.path: frozenset().union(*(h.new_lines for h in f.hunks)) for f in self.reviewed}


def parse_diff(text: str) -> Diff:
    """Parse unified diff text; raise InputError naming the problem if it is not one."""
    if not text.strip():
        raise InputError("the diff is empty")
    try:
        patch = PatchSet(text)
    except UnidiffParseError as exc:
        raise InputError(f"not a unified diff: {exc}") from None
    if not len(patch):
        raise InputError("not a unified diff: no file headers ('--- a/…', '+++ b/…') found")
    return Diff(tuple(_file(pf) for pf in patch))


def _file(pf) -> FileDiff:
    path = pf.path
    hunks = tuple(
        Hunk(
            path=path,
            header=f"@@ -{h.source_start},{h.source_length} +{h.target_start},{h.target_length} @@",
            lines=tuple(
                DiffLine(ln.line_type, ln.target_line_no, ln.value.rstrip("\n"))
                for ln in h
                if ln.line_type in "+- "
            ),
        )
        for h in pf
    )
    # generated-file markers only count in the file's first lines
    first_lines = "\n".join(ln.text for h in hunks for ln in h.lines if ln.new_line and ln.new_line <= 5)
    reason = skip_reason(path, binary=pf.is_binary_file, removed=pf.is_removed_file, head=first_lines)
    if reason is None and not hunks:
        reason = "no text changes"
    return FileDiff(path, hunks, reason)


def git_diff(base: str, head: str, cwd: str | None = None) -> str:
    """`git diff base...head` in a checkout; InputError names the ref git rejected."""
    proc = subprocess.run(
        ["git", "diff", "--no-color", "--no-ext-diff", f"{base}...{head}"],
        cwd=cwd, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise InputError(f"git diff {base}...{head} failed: {proc.stderr.strip()}")
    return proc.stdout
