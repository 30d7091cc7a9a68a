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
# `key: value` rows; a row whose value is a version or "None" is noise, and so is a whole run of such rows
# when at least half are (the other rows name the OS, the locale, the CPU: words the code that prints the
# report holds, which then outranks the code the issue is about)
_KEY_VALUE = re.compile(r"[ \t]*(?:[-*][ \t]+)?[\w.()\[\]/ -]{1,40}?:[ \t]+\S.*")
# inside a report: blank lines, rules, and the second line of `sys.version` ("[GCC 7.3.0]")
_REPORT_FILLER = re.compile(r"[ \t]*(?:[-=]{3,}[ \t]*|\[[^\]\n]*\][ \t]*)?")
# above a report: its title ("INSTALLED VERSIONS"), a <details> tag, and the heading that asks for it
# ("#### Output of ``xr.show_versions()``", "**Environment**")
_REPORT_TITLE = re.compile(r"[ \t]*(?:[A-Z][A-Z ]{3,}|</?\w+>(?:.*</\w+>)?)?[ \t]*")
_HEADING = re.compile(r"[ \t]*(?:#{1,6}[ \t]|\*\*[^*\n]+\*\*[ \t]*$).*")
_VERSION_VALUE = re.compile(r"(?![^:]*(?:Error|Exception|Warning):)[^:]*:[ \t]+v?\d+(?:\.\w+)+(?![\w.])")  # not `KeyError: 1.2`
# ...dropped on its own when it is surely a version: `x.y.z`, or a key naming one (not `learning_rate: 0.001`)
_SURE_VERSION = re.compile(r"[^:]*(?:version[^:]*:[ \t]+v?\d+\.|:[ \t]+v?\d+\.\w+\.)", re.IGNORECASE)
_NO_VALUE = re.compile(r"[^:]*:[ \t]+(?:None|unknown|not installed|N/A)[ \t]*$", re.IGNORECASE)  # counts in a report only
MIN_REPORT_ROWS = 8
_PATH = re.compile(r"(?<![\w.-])/?((?:[\w.-]+/)*[\w-]+\.(?:py|pyi|js|jsx|ts|tsx|go|java|rs|rb|c|h|cpp|md|rst))\b")
_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\b")
_BACKTICKED = re.compile(r"`([^`\n]{1,200})`")
_FRAME = re.compile(r'File "[^"]*?([\w.-]+)\.py", line \d+, in (\w+)|^([\w./\\-]*?([\w-]+))\.py:\d+: in (\w+)', re.MULTILINE)
_ERROR = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Warning|Exit))\b")
_CAMEL_HUMP = re.compile(r"[a-z][A-Z]")
_INDENTED = re.compile(r"^(?: {4}|\t).*$", re.MULTILINE)  # Markdown's other code block
_WORD_RUN = re.compile(r"[A-Za-z][A-Za-z']*(?: [A-Za-z][A-Za-z']*){2,}")  # three or more words in a row
MIN_PHRASE_CHARS = 12
MAX_PHRASES = 32


def _without_reports(text: str) -> str:
    """`text` without environment-report rows: `key: x.y.z` and `... version: x.y` rows, and runs of at
    least MIN_REPORT_ROWS `key: value` rows (blank lines and rules between them) at least half `<version>`
    or `None`, with the title and heading just above them."""
    lines = text.split("\n")
    rows = [bool(_KEY_VALUE.fullmatch(line)) for line in lines]
    versions = [row and bool(_VERSION_VALUE.match(line) or _NO_VALUE.match(line))
                for row, line in zip(rows, lines, strict=True)]
    drop = [v and bool(_SURE_VERSION.match(line)) for v, line in zip(versions, lines, strict=True)]
    start = 0
    for i in range(len(lines) + 1):
        if i < len(lines) and (rows[i] or _REPORT_FILLER.fullmatch(lines[i])):
            continue
        if sum(rows[start:i]) >= MIN_REPORT_ROWS and 2 * sum(versions[start:i]) >= sum(rows[start:i]):
            top = start
            while top > 0 and start - top < 4 and _REPORT_TITLE.fullmatch(lines[top - 1]):
                top -= 1
            if top > 0 and _HEADING.fullmatch(lines[top - 1]):
                top -= 1
            drop[top:i] = [True] * (i - top)
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
