"""Text shaping shared by indexing and querying: full-text terms and embedding windows."""

from __future__ import annotations

import functools
import re

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
OPTION = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*[A-Za-z0-9])")  # `--collect-only`; group 1: its name


def search_text(text: str) -> str:
    """Identifiers split into their parts plus the joined form, for Postgres full-text search.

    `get_records` → `get records getrecords`, `LogCaptureFixture` → `log capture fixture
    logcapturefixture`; Postgres' parser alone would keep neither the parts nor the whole.
    A command-line option adds one rare token (`--collect-only` → `optcollectonly`): the code
    that defines or reads an option names it literally.
    """
    out = ["opt" + re.sub(r"[\W_]", "", m).lower() for m in OPTION.findall(text)]
    out.extend(filter(None, map(_identifier_terms, _IDENT.findall(text))))
    return " ".join(out)


@functools.lru_cache(maxsize=1 << 16)
def _identifier_terms(tok: str) -> str:
    """One identifier's terms (memoised: code and tracebacks repeat their names)."""
    parts = [p.lower() for piece in tok.split("_") for p in _CAMEL.findall(piece)]
    if len(parts) > 1:
        parts.append("".join(parts))
    return " ".join(parts)


def windows(text: str, size: int, overlap: int) -> list[str]:
    """Overlapping windows of about `size` words, in order (callers keep the first N: N=1 is the text's head)."""
    words = text.split()
    if len(words) <= size:
        return [" ".join(words)] if words else []
    step = max(1, size - overlap)
    return [" ".join(words[i : i + size]) for i in range(0, max(1, len(words) - overlap), step)]
