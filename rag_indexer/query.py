"""Query shaping: which part of a (long) user message gets embedded, and which code signals it mentions.

Issue-like messages are mostly noise for retrieval (templates, `pip list` output, logs, links);
the title and the prose around it say what is wrong, the identifiers, options, traceback frames
and error names say where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import OPTION

_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_URL = re.compile(r"https?://\S+")
_FENCED = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.DOTALL | re.MULTILINE)
_CHECKBOX = re.compile(r"^[ \t]*[-*] \[[ xX]\] .*$", re.MULTILINE)  # issue-template checklists
# `pip list`/`freeze` rows; editable installs add a local version (`+g95b8e1a.dirty`) and a location
_VERSION_ROW = re.compile(r"^[ \t]*[\w.\[\]-]+(?:[ \t]+|==)v?\d+(?:\.\w+)+(?:\+[\w.]+)?(?:[ \t]+/\S*)?[ \t]*$", re.MULTILINE)
# environment reports (`xr.show_versions()`, `sphinx-build --bug-report`, issue-template "Python version: 3.8"):
# `key: value` rows. A row whose value is just a version is noise on its own; a stretch of rows at least half of
# them versions or `None` is a report whose other rows (OS, locale, CPU) are words of the code that prints it.
_KEY_VALUE = re.compile(r"[ \t]*+(?:[-*][ \t]+)?[\w.()\[\]/-][\w.()\[\]/ -]{0,39}?:[ \t]+\S.*")
_VERSION_VALUE = re.compile(r"v?(\d+(?:\.\w+)+)(?:[+-][\w.+-]*)?\.?(?:[ \t]+[(\[|].*)?")  # `3.7.1 (default, ...)`
_NO_VALUE = re.compile(r"None|unknown|not installed|N/A", re.IGNORECASE)
_DOTTED_QUAD = re.compile(r"\d+\.\d+\.\d+\.\d+")  # an IP address, not a version
_ERROR_KEY = re.compile(r"(?:Error|Exception|Warning)\s*$")
# inside a report: blank lines, rules, and the second line of `sys.version` ("[GCC 7.3.0]")
_REPORT_FILLER = re.compile(r"[ \t]*+(?:[-=]{3,}|\[(?:GCC|Clang|MSC|PyPy)\b[^\]\n]*\])?[ \t]*")
# above a report: a bare <details> tag, and titles and headings that name the report
_BARE_TAG = re.compile(r"[ \t]*</?\w+>[ \t]*")
_TITLE = re.compile(r"[ \t]*+(?:#{1,6}[ \t].*|\*\*.*\*\*:?|<summary>.*|[A-Z][A-Z0-9 _-]{3,}+|[^.!?]*:)[ \t]*")
_NAMES_REPORT = re.compile(r"version|environment|show_versions|bug.?report|system info|platform|installed|dependencies",
                           re.IGNORECASE)
MIN_REPORT_ROWS = 8
MAX_REPORT_SCAN_LINES = 5_000  # a longer message keeps its reports (the per-line scan would cost more than it saves)
# bounded parts (64 folders, names of 255 characters): unbounded, "a/a/a/..." cost n^2 (60 KB: 30 s)
_PATH = re.compile(r"(?<![\w.-])/?((?:[\w.-]{1,255}/){0,64}[\w-]{1,255}\.(?:py|pyi|js|jsx|ts|tsx|go|java|rs|rb|c|h|cpp|md|rst))\b")
_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\b")
_BACKTICKED = re.compile(r"`([^`\n]{1,200})`")
_FRAME = re.compile(r'File "(?:[^"]*[^\w."-])?([\w.-]+)\.py", line \d+, in (\w+)|^((?:[\w./\\-]*[./\\])?([\w-]+))\.py:\d+: in (\w+)',
                    re.MULTILINE)  # the module name is the path's last part: one way to match it, not n^2
_ERROR = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Warning|Exit))\b")
_CAMEL_HUMP = re.compile(r"[a-z][A-Z]")
_INDENTED = re.compile(r"^(?: {4}|\t).*$", re.MULTILINE)  # Markdown's other code block
# three or more words in a row, each of 64 characters at most: one start per word, each reading a bounded part
_WORD_RUN = re.compile(r"(?<![A-Za-z])(?<![A-Za-z]')[A-Za-z][A-Za-z']{0,63}(?: [A-Za-z][A-Za-z']{0,63}){2,}")
MIN_PHRASE_CHARS = 12
MAX_PHRASES = 32


def _version_row(line: str) -> int:
    """Of a `key: value` row: 2 when its value surely is a version (`x.y.z`, or `x.y` under a key naming a
    version); 1 when it is `None` or `unknown` (it counts in a report); else 0 (`lr: 0.001`, `KeyError: None`)."""
    key, _, value = line.partition(":")
    value = value.strip()
    if _ERROR_KEY.search(key):
        return 0
    if _NO_VALUE.fullmatch(value):
        return 1
    m = _VERSION_VALUE.fullmatch(value)
    if not m or _DOTTED_QUAD.fullmatch(m.group(1)):
        return 0
    return 2 if m.group(1).count(".") >= 2 or "version" in key.lower() else 0


def _without_reports(text: str) -> str:
    """`text` without environment reports: rows that are surely versions, and each stretch of at least
    MIN_REPORT_ROWS `key: value` rows, from its first to its last version or `None` row, that many at least
    half of them, with the blank lines, tags, title and heading above it that name the report."""
    lines = text.split("\n")
    if len(lines) > MAX_REPORT_SCAN_LINES or (": " not in text and ":\t" not in text):
        return text
    is_row = [_KEY_VALUE.fullmatch(line) is not None for line in lines]
    kinds = [_version_row(line) if row else 0 for line, row in zip(lines, is_row, strict=True)]
    drop = [k == 2 for k in kinds]
    start = 0
    for i in range(len(lines) + 1):
        if i < len(lines) and (is_row[i] or _REPORT_FILLER.fullmatch(lines[i])):
            continue
        counted = [j for j in range(start, i) if kinds[j]]
        if counted:
            first, last = counted[0], counted[-1]
            rows = sum(is_row[first : last + 1])
            if rows >= MIN_REPORT_ROWS and 2 * len(counted) >= rows:
                top = first  # up over blank lines, tags, the title ("INSTALLED VERSIONS") and the heading
                while top > 0 and first - top < 6 and (
                        _REPORT_FILLER.fullmatch(lines[top - 1]) or _BARE_TAG.fullmatch(lines[top - 1])
                        or _TITLE.fullmatch(lines[top - 1]) and _NAMES_REPORT.search(lines[top - 1])):
                    top -= 1
                drop[top : last + 1] = [True] * (last + 1 - top)
        start = i + 1
    return "\n".join(" " if d else line for line, d in zip(lines, drop, strict=True))


def clean(text: str) -> str:
    """The message without HTML comments and checklists (issue templates), links, version listings and
    environment reports."""
    out = _HTML_COMMENT.sub(" ", text.replace("\r\n", "\n"))
    return _without_reports(_VERSION_ROW.sub(" ", _CHECKBOX.sub(" ", _URL.sub(" ", out))))


def head(text: str, words: int) -> str:
    """The first `words` words (the embedding model only sees its window anyway)."""
    return " ".join(text.split()[:words])


def path_mentions(text: str) -> list[str]:
    """File paths mentioned in the text (`src/_pytest/logging.py`, `logging.py`)."""
    return list(dict.fromkeys(m.lstrip("./") for m in _PATH.findall(text)))


def symbol_mentions(text: str) -> list[str]:
    """Identifiers that look like code symbols: snake_case, camelCase, dotted, or called `name(`."""
    out = []
    for m in _NAME.finditer(text):
        name = m.group(1)
        called = text[m.end() : m.end() + 1] == "("
        for part in name.split("."):
            if len(part) >= 4 and ("_" in part.strip("_") or called or "." in name or _CAMEL_HUMP.search(part)):
                out.append(part)
    return list(dict.fromkeys(out))[:64]


def dotted_mentions(text: str) -> list[str]:
    """Qualified names mentioned in the text (`Expression.compile`, `caplog.get_records`)."""
    return list(dict.fromkeys(m for m in _NAME.findall(text) if "." in m and not _PATH.fullmatch(m)))[:32]


def phrase_mentions(text: str) -> list[str]:
    """Literal wording quoted in code blocks and backticks (program output, messages), lower-cased runs of
    three or more words: `Right contains more items` is printed by the code that holds that string."""
    quoted = [m.group(0) for m in _FENCED.finditer(text)] + _INDENTED.findall(text) + _BACKTICKED.findall(text)
    runs = (r.lower() for q in quoted for r in _WORD_RUN.findall(q) if len(r) >= MIN_PHRASE_CHARS)
    return list(dict.fromkeys(runs))[:MAX_PHRASES]


@dataclass(frozen=True)
class Shaped:
    """One message taken apart for retrieval (computed once per query)."""

    text: str  # cleaned: for full-text search and mentions
    symbols: list[str]
    dotted: list[str]
    paths: list[str]  # file paths, links included
    signals: list[str]  # code-ish words: backticked spans, symbols, --options, traceback frames, error names
    phrases: list[str]  # quoted wording (output, messages), lower-cased


def prose_of(text: str) -> str:
    """A cleaned message without its fenced blocks (what gets embedded), or all of it when that is all code."""
    prose = _FENCED.sub(" ", text)
    return prose if prose.strip() else text


def shape(message: str, cleaned: str | None = None) -> Shaped:
    """`cleaned`: `clean(message)` when the caller has it already."""
    text = clean(message) if cleaned is None else cleaned
    symbols = symbol_mentions(text)
    signals = [s for span in _BACKTICKED.findall(text) for s in _NAME.findall(span)] + symbols
    signals += ["--" + name for name in OPTION.findall(text)]
    for m in _FRAME.finditer(text):
        signals += [x for x in m.groups() if x and "/" not in x and "\\" not in x]
    signals += _ERROR.findall(text)
    return Shaped(text, symbols, dotted_mentions(text),
                  path_mentions(message), list(dict.fromkeys(signals)), phrase_mentions(text))  # links to files name them too
