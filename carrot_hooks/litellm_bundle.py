"""The LiteLLM seam's import-free half: the installed LiteLLM's version and the offline tokenizer file its
wheel ships, read without importing LiteLLM (~5 s), so `carrot-review` counts tokens the way the gateway
does without loading the proxy. `litellm_compat` re-exports both; tests/test_litellm_contract.py pins them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from importlib.metadata import version
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

TESTED = SpecifierSet(">=1.110.2,<1.111")  # the range tests/test_litellm_contract.py passed on
# tiktoken's cache folder inside the wheel (LiteLLM's `default_encoding` points TIKTOKEN_CACHE_DIR there)
_TOKENIZERS = ("litellm_core_utils", "tokenizers")


def installed_version() -> Version:
    return Version(version("litellm"))


@functools.cache
def _cl100k():
    """cl100k_base from the wheel's copy; ImportError when LiteLLM (or that copy) is absent, never a download."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    if spec is None or spec.origin is None:
        raise ImportError("LiteLLM is not installed: its wheel ships the offline cl100k file")
    folder = Path(spec.origin).parent.joinpath(*_TOKENIZERS)
    if not folder.is_dir():
        raise ImportError(f"LiteLLM {installed_version()} has no {folder}: tiktoken would download cl100k")
    import tiktoken

    # the folder LiteLLM's own import selects (CUSTOM_TIKTOKEN_CACHE_DIR overrides it there too)
    os.environ["TIKTOKEN_CACHE_DIR"] = os.environ.get("CUSTOM_TIKTOKEN_CACHE_DIR") or str(folder)
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Tokens in `text` with the cl100k encoding LiteLLM ships offline (close enough to DeepSeek's
    tokenizer for size thresholds); LiteLLM's `token_counter` would also build a message."""
    return len(_cl100k().encode(text, disallowed_special=()))
