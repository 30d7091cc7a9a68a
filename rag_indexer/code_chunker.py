"""Code chunks by function/class/method with tree-sitter; line windows for other text files."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache

from .chunk import Chunk

WINDOW_LINES = 200  # fallback windows: 150-300 lines (a short tail joins the previous window)
MIN_WINDOW = 150
MAX_DEF_LINES = 300  # longer definitions are split into windows
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class LangSpec:
    module: str
    attr: str
    defs: frozenset[str]  # node types that become chunks
    scopes: frozenset[str]  # node types whose children are chunked separately (classes)


_JS_DEFS = {"function_declaration", "generator_function_declaration", "class_declaration", "method_definition"}
_TS_DEFS = _JS_DEFS | {"abstract_class_declaration", "interface_declaration", "enum_declaration", "type_alias_declaration"}
_CLASSES = {"class_definition", "class_declaration", "abstract_class_declaration", "interface_declaration",
            "enum_declaration", "record_declaration", "class_body", "declaration_list", "interface_body", "enum_body"}

LANGS: dict[str, LangSpec] = {
    "python": LangSpec("tree_sitter_python", "language", frozenset({"function_definition", "class_definition"}), frozenset(_CLASSES)),
    "javascript": LangSpec("tree_sitter_javascript", "language", frozenset(_JS_DEFS), frozenset(_CLASSES)),
    "typescript": LangSpec("tree_sitter_typescript", "language_typescript", frozenset(_TS_DEFS), frozenset(_CLASSES)),
    "tsx": LangSpec("tree_sitter_typescript", "language_tsx", frozenset(_TS_DEFS), frozenset(_CLASSES)),
    "go": LangSpec("tree_sitter_go", "language", frozenset({"function_declaration", "method_declaration", "type_declaration"}), frozenset()),
    "java": LangSpec(
        "tree_sitter_java", "language",
        frozenset({"class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
                   "method_declaration", "constructor_declaration"}),
        frozenset(_CLASSES),
    ),
}
EXTENSIONS = {".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
              ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript", ".tsx": "tsx", ".go": "go", ".java": "java"}
TEXT_LANGS = {".md": "markdown", ".rst": "rst", ".txt": "text", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
              ".json": "json", ".cfg": "ini", ".ini": "ini", ".sh": "shell", ".c": "c", ".h": "c", ".cpp": "cpp",
              ".rs": "rust", ".rb": "ruby", ".html": "html", ".css": "css", ".sql": "sql"}


def language_of(path: str) -> str:
    """Language name from the file extension ("text" when unknown)."""
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return EXTENSIONS.get(suffix) or TEXT_LANGS.get(suffix, "text")


@cache
def _parser(lang: str):
    from tree_sitter import Language, Parser

    spec = LANGS[lang]
    return Parser(Language(getattr(importlib.import_module(spec.module), spec.attr)()))


def _name(node) -> str:
    target = node
    if node.type == "decorated_definition":
        target = node.child_by_field_name("definition") or node
    name = target.child_by_field_name("name")
    if name is None and target.type == "type_declaration":  # go: type_spec holds the name
        spec = next((c for c in target.named_children if c.type in ("type_spec", "type_alias")), None)
        name = spec.child_by_field_name("name") if spec else None
    return name.text.decode("utf-8", "replace") if name is not None else ""


def _windows(path: str, lines: list[str], start: int, end: int, lang: str, symbol: str, size: int = WINDOW_LINES) -> list[Chunk]:
    """Windows of `size` lines over 1-based [start, end]; a tail shorter than MIN_WINDOW joins the last one."""
    bounds, s = [], start
    while s <= end:
        e = min(s + size - 1, end)
        if end - e < MIN_WINDOW and end - s + 1 <= MAX_DEF_LINES:
            e = end
        bounds.append((s, e))
        s = e + 1
    return [
        Chunk(path, s, e, "\n".join(lines[s - 1 : e]), lang, symbol)
        for s, e in bounds
        if _WORD.search("\n".join(lines[s - 1 : e]))  # skip runs of blank lines or lone braces
    ]


def _walk_defs(node, spec: LangSpec, prefix: str, out: list[tuple[int, int, str, bool]]) -> None:
    """Collect (start_row, end_row, symbol, is_scope) for definitions below `node`."""
    for child in node.named_children:
        inner = child
        if child.type == "decorated_definition":
            inner = child.child_by_field_name("definition") or child
        if inner.type in spec.defs:
            symbol = f"{prefix}{_name(child)}"
            body = inner.child_by_field_name("body")
            is_scope = inner.type in spec.scopes and body is not None
            out.append((child.start_point[0], child.end_point[0], symbol, is_scope))
            if is_scope:
                _walk_defs(body, spec, symbol + ".", out)
        elif child.type in ("export_statement", "lexical_declaration", "variable_declaration", "variable_declarator"):
            _walk_defs(child, spec, prefix, out)
        elif child.type in ("arrow_function", "function_expression", "function") and node.type == "variable_declarator":
            name = node.child_by_field_name("name")
            label = name.text.decode("utf-8", "replace") if name is not None else ""
            out.append((node.start_point[0], node.end_point[0], f"{prefix}{label}", False))


def chunk_code(path: str, text: str) -> list[Chunk]:
    """Chunks for one file: definitions for tree-sitter languages, line windows otherwise."""
    lang = language_of(path)
    lines = text.splitlines()
    if not lines:
        return []
    if lang not in LANGS:
        return _windows(path, lines, 1, len(lines), lang, "")
    tree = _parser(lang).parse(text.encode("utf-8"))
    defs: list[tuple[int, int, str, bool]] = []
    _walk_defs(tree.root_node, LANGS[lang], "", defs)
    chunks: list[Chunk] = []
    covered = [False] * (len(lines) + 2)
    # scopes (classes) own only the lines not taken by their members: header, docstring, fields
    for start, end, symbol, is_scope in sorted(defs, key=lambda d: (not d[3], d[0])):
        s, e = start + 1, end + 1
        if not is_scope:
            chunks.extend(_windows(path, lines, s, e, lang, symbol, MAX_DEF_LINES) if e - s + 1 > MAX_DEF_LINES
                          else [Chunk(path, s, e, "\n".join(lines[s - 1 : e]), lang, symbol)])
            for i in range(s, e + 1):
                covered[i] = True
    for start, end, symbol, _ in sorted((d for d in defs if d[3]), key=lambda d: d[1] - d[0]):
        chunks.extend(_gaps(path, lines, covered, start + 1, end + 1, lang, symbol))
    chunks.extend(_gaps(path, lines, covered, 1, len(lines), lang, "<module>"))
    return sorted(chunks, key=lambda c: (c.start_line, c.end_line))


def _gaps(path, lines, covered, s, e, lang, symbol) -> list[Chunk]:
    """Uncovered, non-blank runs of lines in [s, e] as chunks; marks them covered."""
    out, i = [], s
    while i <= e:
        if covered[i]:
            i += 1
            continue
        j = i
        while j + 1 <= e and not covered[j + 1]:
            j += 1
        while i <= j and not lines[i - 1].strip():
            i += 1
        k = j
        while k >= i and not lines[k - 1].strip():
            k -= 1
        if i <= k:
            out.extend(_windows(path, lines, i, k, lang, symbol))
        for x in range(i, j + 1):
            covered[x] = True
        i = j + 1
    return out
