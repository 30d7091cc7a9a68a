"""The LiteLLM seam's import-free half: the installed LiteLLM's version and the offline tokenizer file its
wheel ships, read without importing LiteLLM (~5 s), so `carrot-review` counts tokens the way the gateway
does without loading the proxy. `litellm_compat` re-exports both; tests/test_litellm_contract.py pins them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from importlib.metadata import version
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

TESTED = SpecifierSet(">=1.110.2,<1.111")  # the range tests/test_litellm_contract.py passed on
# tiktoken's cache folder inside the wheel (LiteLLM's `default_encoding` points TIKTOKEN_CACHE_DIR there)
_TOKENIZERS = ("litellm_core_utils", "tokenizers")
# tiktoken names a cached file by the SHA-1 of the URL it would fetch it from
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def installed_version() -> Version:
    return Version(version("litellm"))


def cl100k_file() -> Path:
    """The cl100k file tiktoken will read: in CUSTOM_TIKTOKEN_CACHE_DIR when set (as LiteLLM's import
    decides), else in the wheel; ImportError when LiteLLM or that file is absent (tiktoken would download)."""
    spec = importlib.util.find_spec("litellm")  # finds the package without running it
    if spec is None or spec.origin is None:
        raise ImportError("LiteLLM is not installed: its wheel ships the offline cl100k file")
    folder = os.environ.get("CUSTOM_TIKTOKEN_CACHE_DIR") or str(Path(spec.origin).parent.joinpath(*_TOKENIZERS))
    path = Path(folder) / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    if not path.is_file():
        raise ImportError(f"no cl100k file at {path} (LiteLLM {installed_version()}): tiktoken would download it")
    return path


@functools.cache
def _cl100k():
    import tiktoken

    folder = str(cl100k_file().parent)
    if os.environ.get("TIKTOKEN_CACHE_DIR") != folder:  # in the gateway LiteLLM's import has set it already
        os.environ["TIKTOKEN_CACHE_DIR"] = folder
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Tokens in `text` with the cl100k encoding LiteLLM ships offline (close enough to DeepSeek's
    tokenizer for size thresholds); LiteLLM's `token_counter` would also build a message."""
    return len(_cl100k().encode(text, disallowed_special=()))
