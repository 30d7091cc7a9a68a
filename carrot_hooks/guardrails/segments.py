"""Split a prompt into code and prose so NER only ever sees prose.

Code is: fenced blocks (``` / ~~~), inline `code`, and lines that look like code
(indented, ending in ; { } or :, starting with a keyword, or symbol-dense).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"(?ms)^[ \t]*(```|~~~)[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)")
_INLINE = re.compile(r"`[^`\n]+`")
_CODE_LINE = re.compile(
    r"""^(?:[ \t]{4,}|\t)\S                                  # indented block
    |[;{}]\s*$|^\s*[}\])]                                     # C-like line ends / closers
    |^\s*(?:def|class|import|from|return|if|elif|else|for|while|try|except|with|const|let|var|
         function|public|private|protected|static|package|func|fn|struct|impl|use|\#include|
         SELECT|INSERT|UPDATE|DELETE|CREATE)\b
    |^\s*[\w.\[\]"']+\s*(?:=|\+=|:=|->|=>)\s*\S               # assignments
    |^\s*(?:[$#]|>>>)\s                                      # shell/REPL prompts, comments ("> " quotes are prose)
    |\w\([^)]*\)\s*[:;]?\s*$                                 # call at end of line
    """,
    re.VERBOSE,
)


def prose_mask(text: str) -> str:
    """`text` with every code character replaced by a space (offsets and newlines kept)."""
    chars = list(text)

    def blank(start: int, end: int) -> None:
        for i in range(start, end):
            if chars[i] != "\n":
                chars[i] = " "

    for m in _FENCE.finditer(text):
        blank(*m.span())
    masked = "".join(chars)
    for m in _INLINE.finditer(masked):
        blank(*m.span())
    pos = 0
    for line in masked.split("\n"):
        if line.strip() and _CODE_LINE.search(line):
            blank(pos, pos + len(line))
        pos += len(line) + 1
    return "".join(chars)


def is_code(mask: str, start: int, end: int) -> bool:
    """True when `[start, end)` of the original text was masked as code."""
    return not mask[start:end].strip()
