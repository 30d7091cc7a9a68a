"""Token counts for packing diffs under a budget, without requiring the gateway's dependencies.

With the gateway installed, the exact offline cl100k count (its BPE file ships in LiteLLM's wheel; read
through the gateway's LiteLLM seam without importing LiteLLM);
with only `carrot-coder-gateway[review]`, an estimate of one token per 3 characters, which
over-counts code (about 4 characters per token), so chunks stay under the budget. tiktoken alone
would download its BPE file at first use, hence no third option.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable


def estimate(text: str) -> int:
    """A conservative token estimate: one token per 3 characters."""
    return len(text) // 3 + 1


def utf8_size(text: str) -> int:
    """Bytes of `text` in UTF-8: never fewer than its tokens (a token is at least one byte)."""
    return len(text.encode())


def counter() -> Callable[[str], int]:
    """The best token counter this installation has."""
    if importlib.util.find_spec("litellm") is None:
        return estimate
    try:
        from carrot_hooks.litellm_bundle import TESTED, count_tokens, installed_version

        if installed_version() not in TESTED:  # another tool's LiteLLM pin in this venv: its files may differ
            return estimate
        count_tokens("")  # loads the encoding now: ImportError when there is no offline copy of its file
    except Exception:  # noqa: BLE001 - no exact counter (e.g. a corrupt file): the estimate still packs safely
        return estimate
    return count_tokens
