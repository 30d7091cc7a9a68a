"""Score one answer: FIM span match + the completed file parses; hidden unit tests; RAG retrieval + citation."""

from __future__ import annotations

import ast
import functools
import re

from .sandbox import run_python
from .suite import CodeCase, FimCase, RagCase

_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def normalise(code: str) -> str:
    """Whitespace-insensitive form: the span's tokens separated by single spaces."""
    return " ".join(code.split())


@functools.cache
def _parser(language: str):
    import tree_sitter

    if language == "typescript":
        import tree_sitter_typescript as mod
        lang = mod.language_typescript()
    else:
        mod = __import__(f"tree_sitter_{language}")
        lang = mod.language()
    return tree_sitter.Parser(tree_sitter.Language(lang))


def parses(source: str, language: str) -> bool:
    """Python by its own compiler, the other languages by their tree-sitter grammar (no ERROR/MISSING nodes)."""
    if language == "python":
        try:
            ast.parse(source)
        except (SyntaxError, ValueError):
            return False
        return True
    return not _parser(language).parse(source.encode()).root_node.has_error


def score_fim(case: FimCase, text: str) -> tuple[bool, str]:
    exact = text.strip("\n") == case.expected.strip("\n")
    matched = exact or normalise(text) == normalise(case.expected)
    if not parses(case.prefix + text + case.suffix, case.language):
        return False, "completed file does not parse" + ("" if matched else "; span differs")
    return (True, "exact" if exact else "normalised") if matched else (False, "span differs from expected")


def extract_code(answer: str) -> str:
    """The first ```python block of a chat answer, or the whole answer when it has none."""
    m = _FENCE.search(answer)
    return m.group(1) if m else answer


def score_code(case: CodeCase, answer: str, timeout: float) -> tuple[bool, str]:
    code = extract_code(answer)
    # a whole function (chat answer) stands alone; a bare body continues the prompt (completion style)
    program = code if re.search(rf"^\s*def {re.escape(case.entry_point)}\s*\(", code, re.MULTILINE) else case.prompt + code
    outcome = run_python(f"{program}\n\n{case.test}\n\ncheck({case.entry_point})\n", timeout=timeout)
    return outcome.passed, outcome.reason or "hidden tests pass"


def score_rag(case: RagCase, answer: str, rag_status: str, sources: list[str]) -> tuple[bool, str]:
    if not rag_status.startswith("injected:"):
        return False, f"nothing retrieved (x-carrot-rag: {rag_status or 'absent'})"
    if case.gold not in sources:
        return False, "gold file not among the retrieved sources"
    if case.gold not in answer:
        return False, "answer does not cite the gold file"
    return True, "retrieved and cited"
