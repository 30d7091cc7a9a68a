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


def prompt_text(data: dict) -> str:
    """All text a chat or completion request sends: message contents (text parts) or prompt + suffix."""
    parts: list[str] = []
    for m in data.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif isinstance(prompt, list):
        parts += [p for p in prompt if isinstance(p, str)]
    if isinstance(data.get("suffix"), str):
        parts.append(data["suffix"])
    return "\n".join(parts)
