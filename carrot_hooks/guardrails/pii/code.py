"""Where a prompt holds code, and where inside that code the string literals and comments are.

Code is: fenced blocks (``` / ~~~), inline `code`, and unfenced lines that look like code
(indentation, line ends, keywords, assignments, calls, annotations, decorators, comment
markers, symbol density), together with the docstrings and block comments that belong to
them and prose-looking lines wedged between two code lines. A line-level lexer then marks
string literals and comments in the code, the only places where an email address in code
is a candidate (see `redactor`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_FENCE = re.compile(r"(?ms)^[ \t]*(```|~~~)[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)")
# ``double`` (RST, Markdown) before `single`, so ``a`` b ``c`` is not read as code between the pairs
_INLINE = re.compile(r"``[^`\n]+``|`[^`\n]+`")
# A line is code when it starts like code (matched at its start) or ends like it (`;`, `{`, `}` or a call):
# one anchored match and two end checks that first look for their characters, not one search of every
# position of every line.
_CODE_START = re.compile(
    r"""\s*[}\])]                                                  # closers
    |\s*(?:\#include|\#define|SELECT|INSERT|UPDATE|DELETE|CREATE)\b  # never how a line of prose starts
    |\s*[\w.\[\]"']+\s*(?:=|\+=|-=|:=|->|=>|==)\s*\S           # assignments
    |\s*[a-z_]\w*\s*:\s*(?:[A-Z]\w*|str|int|float|bool|bytes|list|dict|set|tuple|None|Any|string|number|boolean)
        (?:\[.{0,400}\])?(?:\s*\|\s*[^\s|]+)*\s*(?:[=,;)].*)?$         # annotation: request: Request | None
    |\s*@[\w.]+(?:\(.*\))?\s*$                                # decorator
    |\s*(?:[$#]|>>>|\.\.\.|//|/\*|\*/|--)(?:\s|$)|\#!          # prompts, comments ("> " quotes are prose)
    |\s*["'][^"']*["'],?\s*$                                  # a lone string literal (import lists, arrays)
    |\s*\w+(?:\.\w+)+\([^)]*\)?                               # method call at the start: obj.run(...)
    """,
    re.VERBOSE,
)
# Keywords that are also English words ("use my email ...", "from Anna: ...", "for kim@corp.io"): a line that
# starts with one is code only with code after it (`_keyword_line`).
_KEYWORD = re.compile(
    r"""\s*(?:def|class|import|from|return|if|elif|else|for|while|try|except|finally|with|raise|yield|async|await|
    assert|const|let|var|function|export|interface|type|enum|public|private|protected|static|package|func|fn|
    struct|impl|use)\b(?!\s+(?:the|a|an|you|we|i|it)\s+\w)""", re.VERBOSE)
# a call or index (`f(`, `a[`), a condition opened at once (`if (`), braces, `=`, `;`, arrows or `::`: not a bare
# bracket, `<>`, `.`, `@`, `:` or `+`, which "(415) 555-0134", "Kim <kim@corp.io>" and addresses have
_KEYWORD_CODE = re.compile(r"\w[(\[]|^\(|[{}=;]|->|::")
_ONE_TOKEN = re.compile(r"[\w.'\"]*")  # `import os`, `return self.x`, `package main`, `else`
_BARE_ADDRESS = re.compile(r"""(?<!["'\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b""")  # unquoted: prose
_HEADER_TOKEN = re.compile(r"[A-Za-z_][\w.]*|\S")
# words that may stand next to a name in a Python header (`for x in y:`, `except E as e:`, `if not x:`)
_PY_WORDS = frozenset(("and", "or", "not", "in", "is", "as", "if", "else", "for", "lambda", "await", "async", "None",
                       "True", "False"))
# whole-line shapes of code that holds no other evidence: imports (Python, ES modules), ES re-exports and default
# exports, `raise E from e`, `return a, b`, `class A extends B`
_CODE_SHAPE = re.compile(
    r"""\s*(?:from\s+\.*[\w.]+\s+import\s+\S
    |import\s+[\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*\s*;?\s*$
    |import\s+(?:type\s+)?(?:[\w$]+|\*\s+as\s+[\w$]+)(?:\s*,\s*\{[^}]*\})?\s+from\s+["'][^"']+["']\s*;?\s*$
    |import\s+["'][^"']+["']\s*;?\s*$
    |export\s+(?:\*(?:\s+as\s+[\w$]+)?\s+from\s+["'][^"']+["']|default\s+[\w$.]+)\s*;?\s*$
    |raise\s+[\w.]+\s+from\s+[\w.]+\s*$
    |(?:return|yield)\s+[\w.]+(?:\s*,\s*[\w.]+)+\s*;?\s*$
    |(?:(?:public|private|protected|abstract|final|static)\s+)*class\s+\w+(?:<[^>]*>)?\s+(?:extends|implements)\s+[\w.]+)""",
    re.VERBOSE)
_CALL_OPEN = re.compile(r"\w\(")
_CALL_TAIL = re.compile(r"\s*+(?:[:;,]\s*+)?")  # after a call's ")": nothing but `:`, `;` or `,` and spaces
# symbols prose rarely has (not `: + ( ) -`, which phone numbers and lists use)
# Indented lines are code when they hold a code symbol or follow code (an indented address
# block in a mail signature is prose).
_INDENTED = re.compile(r"^(?:[ \t]{4,}|\t)\S")
_CODE_SYMBOL = re.compile(r"[(){}\[\]=;:<>#@\\]|\w\.\w|^\s*(?:\"\"\"|\'\'\')")
_SYMBOLS = re.compile(r"[{}\[\];=<>|&^~]|\w\(|->|::|\)\.|\w\.\w+\(|\w\*\*?\w")  # ... tight a*b, x**2
# A trailing comment (`@dispatch(A, B)  # type: ignore`) is set aside before the line patterns look.
_TRAILING_COMMENT = re.compile(r"(?<![ \t])[ \t]+(?:#|//)[^\n]*$")  # from a run's start only: linear
_QUOTED = re.compile(r""""(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'""")
# Multi-line literals/comments that belong to surrounding code: docstrings, /* */ blocks.
_BLOCK = re.compile(r'(?s)("""|\'\'\')(?:\\.|(?!\1).)*(?:\1|\Z)|/\*.*?(?:\*/|\Z)')
_LEX = re.compile(r'"""|\'\'\'|/\*|\*/|//|#|\\.|["\'`]|\n')


_SYMBOL_CHARS = "{}[];=<>|&^~():*"  # every _SYMBOLS match holds one of these


def _code_line(line: str) -> bool:
    """`line` (no newline) starts or ends like code."""
    return bool(_CODE_START.match(line)) or line.rstrip().endswith((";", "{", "}")) or _ends_in_call(line) \
        or _keyword_line(line)


def _keyword_line(line: str) -> bool:
    """`line` has a `_CODE_SHAPE`, or starts with a keyword and goes on like code with no unquoted email address
    after it: a call or index, braces, `=`, `;`, an arrow, an opener at its end, the keyword and one token, or a
    header ending in `:` / `,` whose words could be Python's ("with Kim Roe and Hans Gruber:" is prose)."""
    if _CODE_SHAPE.match(line):
        return True
    m = _KEYWORD.match(line)
    if m is None:
        return False
    rest = line[m.end():].strip()
    if _BARE_ADDRESS.search(rest):  # "use kim.roe@acme.io; it is my work address"
        return False
    if not rest or rest[-1] in "([{\\" or _KEYWORD_CODE.search(rest) is not None \
            or _ONE_TOKEN.fullmatch(rest) is not None:
        return True
    return rest[-1] in ":," and _python_words(rest[:-1])


def _python_words(text: str) -> bool:
    """No two names side by side unless one is an operator word (`x in y`, `E as e`; not `Kim Roe`)."""
    after_name = False
    for token in _HEADER_TOKEN.findall(text):
        name = (token[0].isalpha() or token[0] == "_") and token not in _PY_WORDS
        if name and after_name:
            return False
        after_name = name
    return True


def _ends_in_call(line: str) -> bool:
    """A call ends the line (`run(x)`, `if f(a):`): its ")" is the line's last, an opening `name(` comes after
    the ")" before it, and only `:`, `;`, `,` or spaces follow (one pass, not a regex search from every "(")."""
    close = line.rfind(")")
    if close < 0 or not _CALL_TAIL.fullmatch(line, close + 1):
        return False
    return bool(_CALL_OPEN.search(line, line.rfind(")", 0, close) + 1, close))


def _symbol_dense(line: str) -> bool:
    """At least 3 code symbols, one per 12 non-space characters or more (the regex runs only when counting
    the symbols' characters, an upper bound of its matches, leaves that possible)."""
    chars = len(line) - line.count(" ")
    most = sum(map(line.count, _SYMBOL_CHARS))
    if most < 3 or most * 12 < chars:
        return False
    hits = len(_SYMBOLS.findall(line))
    return hits >= 3 and hits * 12 >= chars


@dataclass(frozen=True)
class Layout:
    """`text` split into code and prose, with the code's literals and comments marked."""

    text: str
    prose: str  # `text` with code blanked to spaces (offsets and newlines kept): what NER may read
    literal: bytes  # 1 where a character of code lies in a string literal or a comment

    def is_code(self, start: int, end: int) -> bool:
        """True when any character of `[start, end)` is code."""
        return any(self.prose[i] == " " and not self.text[i].isspace() for i in range(start, end))

    def in_literal(self, start: int, end: int) -> bool:
        """True when all of `[start, end)` lies inside a string literal or comment of the code."""
        return all(self.literal[start:end])


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for line in text.split("\n"):
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


def _code_lines(text: str, masked: str, lines: list[tuple[int, int]]) -> list[bool]:
    """Per line of `text` (`lines`: their spans): is it code (`masked` has fenced and inline code already blanked)?"""
    code = [False] * len(lines)
    for i, (s, e) in enumerate(lines):
        line = masked[s:e]
        if not line.strip():
            code[i] = bool(text[s:e].strip())  # all of it fenced or inline code
        else:
            head = _TRAILING_COMMENT.sub("", line)
            code[i] = _code_line(line) or head != line and _code_line(head) or _symbol_dense(line) or bool(
                _INDENTED.match(line) and (_CODE_SYMBOL.search(line) or _near_code(code, lines, masked, i - 1, -1)))
    _continuations(code, [masked[s:e] for s, e in lines])
    starts = [s for s, _ in lines]
    # docstrings and block comments next to code (or opened after code on their first line)
    for m in _BLOCK.finditer(masked):
        first = _line_of(starts, m.start())
        last = _line_of(starts, max(m.start(), m.end() - 1))
        before = masked[lines[first][0] : m.start()].strip()
        if before or _near_code(code, lines, masked, first - 1, -1) or _near_code(code, lines, masked, last + 1, 1):
            for i in range(first, last + 1):
                code[i] = True
    # a prose-looking line wedged between code lines (no blank line between) is part of the code
    for i in range(1, len(lines) - 1):
        if not code[i] and masked[lines[i][0] : lines[i][1]].strip() and code[i - 1] and code[i + 1] \
                and text[lines[i - 1][0] : lines[i - 1][1]].strip() and text[lines[i + 1][0] : lines[i + 1][1]].strip():
            code[i] = True
    return code


def _continuations(code: list[bool], lines: list[str]) -> None:
    """Lines inside a bracket a code line left open are code too (a multi-line call, list or
    expression), when the bracket closes before a blank line or the end: a question typed after
    half-pasted code stays prose."""
    depth, run = 0, []
    for i, line in enumerate(lines):
        if not line.strip():
            for j in run:  # never closed: the lines after the open bracket were not its arguments
                code[j] = False
            depth, run = 0, []
            continue
        if depth > 0 and not code[i]:
            code[i] = True
            run.append(i)
        if code[i]:
            bare = _TRAILING_COMMENT.sub("", _QUOTED.sub("", line))
            depth = max(0, depth + bare.count("(") + bare.count("[") + bare.count("{")
                        - bare.count(")") - bare.count("]") - bare.count("}"))
            if depth == 0:
                run = []
    for j in run:
        code[j] = False


def _line_of(starts: list[int], pos: int) -> int:
    return bisect.bisect_right(starts, pos) - 1


def _near_code(code: list[bool], lines, masked: str, i: int, step: int) -> bool:
    """The nearest non-blank line from `i` in direction `step` (at most one blank line away) is code."""
    blanks = 0
    while 0 <= i < len(lines):
        if masked[lines[i][0] : lines[i][1]].strip() or code[i]:
            return code[i]
        blanks += 1
        if blanks > 1:
            return False
        i += step
    return False


def _literals(text: str, code: bytearray) -> bytearray:
    """1 for code characters inside string literals or comments (a small C/Python/shell lexer)."""
    out = bytearray(len(text))
    quote = None  # open string delimiter
    comment = None  # "line" or "block"
    start = 0
    for m in _LEX.finditer(text):
        tok, pos = m.group(0), m.start()
        if not code[pos] and tok != "\n":
            quote = comment = None  # prose resets the lexer
            continue
        if comment == "line":
            if tok == "\n":
                out[start:pos] = b"\x01" * (pos - start)
                comment = None
        elif comment == "block":
            if tok == "*/":
                out[start : m.end()] = b"\x01" * (m.end() - start)
                comment = None
        elif quote:
            if tok == quote:
                out[start : m.end()] = b"\x01" * (m.end() - start)
                quote = None
            elif tok == "\n" and len(quote) == 1 and quote != "`":
                quote = None  # unterminated one-line string
        elif tok in ('"', "'", "`", '"""', "'''"):
            quote, start = tok, pos
        elif tok == "/*":
            comment, start = "block", pos
        elif tok == "//" and (pos == 0 or text[pos - 1] != ":") or tok == "#" and (pos == 0 or text[pos - 1] in " \t\n"):
            comment, start = "line", pos
    if comment or quote:
        out[start:] = b"\x01" * (len(text) - start)
    return out


def layout(text: str) -> Layout:
    """Split `text` into code and prose and mark the code's literals and comments."""
    chars = list(text)
    code = bytearray(len(text))

    def blank(start: int, end: int) -> None:
        chars[start:end] = "\n".join(" " * len(part) for part in text[start:end].split("\n"))  # newlines kept
        code[start:end] = b"\x01" * (end - start)

    for m in _FENCE.finditer(text):
        # the fence lines themselves are markup; the body is code
        body_start = text.index("\n", m.start()) + 1 if "\n" in m.group(0) else m.end()
        close_start = text.rfind("\n", body_start, m.end()) + 1 or m.end()
        if text[close_start : m.end()].strip() != m.group(1):
            close_start = m.end()  # unterminated: the block runs to the end of the text
        blank(m.start(), m.end())
        code[m.start() : body_start] = bytes(body_start - m.start())
        code[close_start : m.end()] = bytes(m.end() - close_start)
    masked = "".join(chars)
    for m in _INLINE.finditer(masked):
        blank(*m.span())
    masked = "".join(chars)
    lines = _line_spans(text)
    for (s, e), is_code_line in zip(lines, _code_lines(text, masked, lines)):
        if is_code_line and masked[s:e].strip():  # fenced/inline code is blanked already; fence lines are markup
            blank(s, e)
    return Layout(text, "".join(chars), bytes(_literals(text, code)))
