"""FIM prompts clients build themselves (sentinels in `prompt`, no `suffix`) reach the FIM twins as
`prompt` + `suffix`: the parser over every format, and Continue's autocomplete requests replayed."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from carrot_hooks import fim
from tests.fake_upstream import Reply

# Code-like text without any sentinel of any format (those are special tokens, never in source text).
CODE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80).filter(
    lambda s: not any(t and t.strip() in s for f in fim.FORMATS for t in (f.prefix_tok, f.suffix_tok, f.middle_tok)))


def build(fmt: fim.FimFormat, prefix: str, suffix: str, context: str = "") -> str:
    if fmt.suffix_first:
        return f"{context}{fmt.suffix_tok}{suffix}{fmt.prefix_tok}{prefix}"
    return f"{context}{fmt.prefix_tok}{prefix}{fmt.suffix_tok}{suffix}{fmt.middle_tok}"


@pytest.mark.parametrize("fmt", fim.FORMATS, ids=lambda f: f.name)
@given(prefix=CODE, suffix=CODE, context=CODE)
def test_every_format_splits_back_into_prefix_and_suffix(fmt, prefix, suffix, context):
    parts = fim.parse(build(fmt, prefix, suffix, context))
    assert parts == fim.FimParts(fmt.name, context + prefix, suffix)


@given(text=CODE)
def test_plain_prompts_are_left_alone(text):
    data = {"prompt": text}
    assert fim.split_sentinels(data) is None and data == {"prompt": text}


@pytest.mark.parametrize("prompt", [
    "# the template is <fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle> and then\nx = 1",  # not at the end
    "<fim_suffix>tail<fim_middle>",  # no prefix sentinel
    "<｜fim▁begin｜>head<｜fim▁end｜>",  # no hole
])
def test_sentinels_that_do_not_frame_a_hole_are_not_fim(prompt):
    assert fim.parse(prompt) is None


def test_a_client_suffix_wins_over_sentinels():
    data = {"prompt": "<fim_prefix>a<fim_suffix>b<fim_middle>", "suffix": "c"}
    assert fim.split_sentinels(data) is None and data["prompt"].startswith("<fim_prefix>")


# --- Continue's autocomplete, replayed ------------------------------------------------------------
# Continue (core/autocomplete/templating/AutocompleteTemplate.ts, getTemplateForModel) picks the
# template from the model name; with `provider: openai` it posts the rendered prompt to /v1/completions
# (OpenAI._legacystreamComplete): {model, prompt, stop, stream: true, temperature 0.01, max_tokens}.
# Stops = the template's own + Continue's common stops ("/src/", "#- coding: utf-8", "```").
COMMON_STOPS = ["/src/", "#- coding: utf-8", "```"]
CONTINUE = {  # model name Continue is configured with -> (template format, the template's stop list)
    "carrot-editor": ("starcoder", ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<|endoftext|>",
                                    "</fim_middle>", "</code>"]),
    "deepseek-coder-6.7b": ("deepseek", ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "//",
                                         "<｜end▁of▁sentence｜>"]),
    "codellama-7b": ("codellama", ["<PRE>", "<SUF>", "<MID>", "<EOT>"]),
    "qwen2.5-coder-1.5b": ("qwen", ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                                    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|im_start|>", "<|im_end|>"]),
    "codestral-latest": ("codestral", ["[PREFIX]", "[SUFFIX]", "\n+++++ "]),
}
FORMAT = {f.name: f for f in fim.FORMATS}


@pytest.mark.parametrize("model", sorted(CONTINUE))
def test_continue_autocomplete_request_is_real_fim(proxy, fake_upstream, marker, model):
    name, template_stops = CONTINUE[model]
    prefix, suffix = f"# {marker}\ndef add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    # Continue's Qwen multi-file template puts repository context before the prefix sentinel
    context = "<|repo_name|>app\n<|file_sep|>util.py\nX = 1\n<|file_sep|>main.py\n" if name == "qwen" else ""
    if name == "codellama":  # "<PRE> {prefix} <SUF>{suffix} <MID>": the spaces belong to the sentinels
        prefix = prefix.rstrip()
    body = {"model": model, "prompt": build(FORMAT[name], prefix, suffix, context), "stream": True,
            "stop": template_stops + COMMON_STOPS, "temperature": 0.01, "max_tokens": 256}
    fake_upstream.script(Reply(match=marker, content="return a + b"))
    with httpx.stream("POST", f"{proxy.base_url}/v1/completions", json=body, headers=proxy.headers(),
                      timeout=60) as r:
        assert r.status_code == 200, r.read()
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        headers = r.headers
    assert "".join(e["choices"][0]["text"] for e in events if e.get("choices")) == "return a + b"
    [up] = fake_upstream.find(marker)
    assert up.path == "/v1/completions" and up.json["model"] == "carrot-deepseek-coder-fim:6.7b-base-q4_K_M"
    assert (up.json["prompt"], up.json["suffix"]) == (context + prefix, suffix)
    assert up.json["stop"] == template_stops + COMMON_STOPS  # all of them: LiteLLM's limit of 4 is lifted
    assert headers["x-carrot-fim"] == name and headers["x-carrot-model"] == "ds-coder-6.7b"
    assert headers["x-carrot-route"] == "small-model-tasks"
