"""Offline token counts for routing by prompt size."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import tiktoken

# cl100k ships inside LiteLLM's wheel; point tiktoken at it (as LiteLLM does) without importing
# LiteLLM, so the review bot and benches count tokens offline and start fast.
os.environ["TIKTOKEN_CACHE_DIR"] = str(
    Path(importlib.util.find_spec("litellm").submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers")
encoding = tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Tokens in `text` (cl100k; close enough to DeepSeek's tokenizer for size thresholds)."""
    return len(encoding.encode(text, disallowed_special=()))
