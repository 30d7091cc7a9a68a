"""Deterministic linters that gate the build: a default per language in the diff, or `--lint` commands."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from carrot_review.errors import InputError
from carrot_review.findings import Finding

LANGUAGES = {
    ".py": "python", ".pyi": "python",
    ".sh": "shell", ".bash": "shell",
    ".yml": "yaml", ".yaml": "yaml",
}
# Each default prints `file:line[:col]: message` lines, the format `parse_output` reads.
DEFAULT_COMMANDS = {
    "python": "ruff check --output-format=concise --no-fix --force-exclude {files}",
    "shell": "shellcheck --format=gcc {files}",
    "yaml": "yamllint --format=parsable {files}",
}
# Linters' caches go to a temporary folder, never into the user's checkout (.ruff_cache, .mypy_cache, __pycache__)
CACHE_ENV = {"RUFF_CACHE_DIR": "ruff", "MYPY_CACHE_DIR": "mypy", "PYTHONPYCACHEPREFIX": "pycache"}
_LOCATED = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)?\s*(?P<msg>\S.*)$")
_LEVEL = re.compile(r"^\[?(?P<level>error|warning|note|info|style)\]?:?\s+", re.IGNORECASE)
_RULE = re.compile(r"^(?P<rule>[A-Z]+[0-9]+)\b\s*(?:\[\*\]\s*)?|\[(?P<trail>SC\d+|[\w-]+)\]\s*$")


@dataclass(frozen=True)
class LintSpec:
    """A command to run; `language` None means "on every changed file"."""

    command: str
    language: str | None = None
    default: bool = False


@dataclass
class LintResult:
    spec: LintSpec
    files: list[str]
    returncode: int | None = None
    findings: list[Finding] = field(default_factory=list)
    output: str = ""
    note: str | None = None  # why it did not run, or how it failed to

    @property
    def failed(self) -> bool:
        if self.returncode is None:  # could not run: only a missing *default* linter is forgiven
            return not self.spec.default
        return self.returncode != 0


def parse_lint_option(value: str) -> LintSpec:
    """`--lint CMD` or `--lint LANG=CMD` (LANG one of LANGUAGES' values) → LintSpec."""
    lang, sep, rest = value.partition("=")
    if sep and lang in set(LANGUAGES.values()):
        if not rest.strip():
            raise InputError(f"--lint {value!r}: empty command for language {lang!r}")
        return LintSpec(rest.strip(), lang)
    if not value.strip():
        raise InputError("--lint: empty command")
    return LintSpec(value.strip())


def plan(changed: list[str], explicit: list[LintSpec], use_defaults: bool = True) -> list[tuple[LintSpec, list[str]]]:
    """Commands to run with the changed files each gets; defaults only for languages present in the diff."""
    by_lang: dict[str, list[str]] = {}
    for path in changed:
        lang = LANGUAGES.get(posixpath.splitext(path)[1].lower())
        if lang:
            by_lang.setdefault(lang, []).append(path)
    overrides = {s.language: s for s in explicit if s.language}
    plain = [s for s in explicit if not s.language]
    steps = [(s, list(changed)) for s in plain]
    for lang, files in by_lang.items():
        if lang in overrides:
            steps.append((overrides[lang], files))
        elif use_defaults and not plain:
            steps.append((LintSpec(DEFAULT_COMMANDS[lang], lang, default=True), files))
    return steps


def run_all(steps: list[tuple[LintSpec, list[str]]], cwd: Path, timeout: float) -> list[LintResult]:
    """Run each planned command, with the linters' caches in a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="carrot-review-cache-") as tmp:
        env = {**os.environ, **{var: str(Path(tmp) / sub) for var, sub in CACHE_ENV.items()}}
        return [run(spec, files, cwd, timeout, env) for spec, files in steps]


def run(spec: LintSpec, files: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> LintResult:
    """Run one lint command on the files that exist in `cwd`; its exit status decides `failed`."""
    present = [f for f in files if (cwd / f).is_file()]
    result = LintResult(spec, present)
    argv = shlex.split(spec.command)
    if "{files}" in argv:
        if not present:
            result.note = "no changed files on disk to lint"
            result.returncode = 0
            return result
        i = argv.index("{files}")
        argv = argv[:i] + present + argv[i + 1:]
    exe = _which(argv[0])
    if exe is None:
        result.note = f"`{argv[0]}` not found" + (" (default linter skipped)" if spec.default else "")
        return result
    argv[0] = exe
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        result.returncode, result.note = -1, f"timed out after {timeout:g}s"
        return result
    result.returncode = proc.returncode
    result.output = (proc.stdout + proc.stderr).strip()
    result.findings = parse_output(result.output, Path(exe).name, cwd)
    return result


def _which(name: str) -> str | None:
    """PATH, then the bot's own environment (a venv's bin/ is often not on PATH)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def parse_output(output: str, tool: str, cwd: Path) -> list[Finding]:
    """Read `file:line[:col]: [level:] [RULE] message` lines (ruff concise, gcc, shellcheck, yamllint)."""
    findings = []
    for raw in output.splitlines():
        m = _LOCATED.match(raw.strip())
        if not m:
            continue
        msg = m["msg"]
        level = _LEVEL.match(msg)
        severity = "error"
        if level:
            severity = {"warning": "warning", "note": "note", "info": "note", "style": "note"}.get(level["level"].lower(), "error")
            msg = msg[level.end():]
        rule = None
        for r in _RULE.finditer(msg):
            rule = r["rule"] or r["trail"]
        msg = _RULE.sub("", msg).strip() or msg
        findings.append(Finding(file=_relative(m["file"], cwd), line=int(m["line"]), severity=severity,
                                message=msg, source=tool, rule=rule))
    return findings


def _relative(path: str, cwd: Path) -> str:
    p = Path(path)
    if p.is_absolute():
        try:
            return p.resolve().relative_to(cwd.resolve()).as_posix()
        except ValueError:
            return p.as_posix()
    return posixpath.normpath(p.as_posix())
