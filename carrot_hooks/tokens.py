"""Offline token counts for routing by prompt size."""

from __future__ import annotations

from litellm.litellm_core_utils.default_encoding import encoding  # tiktoken cl100k, bundled with LiteLLM


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
