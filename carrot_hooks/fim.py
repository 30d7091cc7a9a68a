"""Fill-in-the-middle prompts that clients build themselves, turned back into `prompt` + `suffix`.

Editors that talk to a plain completions endpoint (Continue's `provider: openai` autocomplete, llm.nvim,
Tabby…) send one string with the model's FIM sentinels around prefix and suffix, with the template picked
from the model *name*. Our FIM twins do FIM from `prompt` + `suffix` (Ollama renders the right sentinels
for the model it runs), so the sentinels are parsed out here whatever format the client picked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FimFormat:
    """`prefix_tok PREFIX suffix_tok SUFFIX middle_tok` (PSM), or with `suffix_first`
    `suffix_tok SUFFIX prefix_tok PREFIX` (SPM, no middle token). Text before the first sentinel
    (repository/file context some templates add) stays in front of the prefix."""

    name: str
    prefix_tok: str
    suffix_tok: str
    middle_tok: str = ""
    suffix_first: bool = False


# The sentinel formats of the code models clients build prompts for (Continue's autocomplete
# templates, the models' own model cards). Order matters only for formats sharing a token.
FORMATS: tuple[FimFormat, ...] = (
    FimFormat("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    FimFormat("qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # also CodeGemma, Granite 4
    FimFormat("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # also StableCode, StarCoder2
    FimFormat("codellama", "<PRE> ", " <SUF>", " <MID>"),
    FimFormat("seed-coder", "<[fim-prefix]>", "<[fim-suffix]>", "<[fim-middle]>"),
    FimFormat("codestral", "[PREFIX]", "[SUFFIX]", suffix_first=True),
)


@dataclass(frozen=True)
class FimParts:
    format: str
    prefix: str
    suffix: str


def _psm(fmt: FimFormat, prompt: str) -> FimParts | None:
    if not prompt.endswith(fmt.middle_tok):
        return None
    body = prompt[: len(prompt) - len(fmt.middle_tok)]
    start = body.rfind(fmt.prefix_tok)
    hole = body.find(fmt.suffix_tok, start + len(fmt.prefix_tok)) if start >= 0 else -1
    if hole < 0:
        return None
    context = body[:start]
    return FimParts(fmt.name, context + body[start + len(fmt.prefix_tok):hole], body[hole + len(fmt.suffix_tok):])


def _spm(fmt: FimFormat, prompt: str) -> FimParts | None:
    start = prompt.find(fmt.suffix_tok)
    hole = prompt.rfind(fmt.prefix_tok)
    if start < 0 or hole < start:
        return None
    return FimParts(fmt.name, prompt[:start] + prompt[hole + len(fmt.prefix_tok):],
                    prompt[start + len(fmt.suffix_tok):hole])


def parse(prompt: str) -> FimParts | None:
    """The prefix and suffix of a prompt built with one of FORMATS, or None for a plain prompt."""
    for fmt in FORMATS:
        parts = _spm(fmt, prompt) if fmt.suffix_first else _psm(fmt, prompt)
        if parts is not None:
            return parts
    return None


def split_sentinels(data: dict) -> str | None:
    """Rewrite a sentinel-built `prompt` (and no `suffix`) into `prompt` + `suffix`; the format's name or None."""
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or data.get("suffix"):
        return None
    parts = parse(prompt)
    if parts is None:
        return None
    data["prompt"], data["suffix"] = parts.prefix, parts.suffix
    return parts.format
