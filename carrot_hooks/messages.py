"""Message walking in one place: every stage that reads or rewrites request text goes through here.

One walker for every endpoint's format, chosen by no guess: it visits every place any of them keeps
caller text, so a field a client adds cannot make the guardrails read the request as another format.
Chat `messages` (string content, typed parts, assistant `tool_calls` / `function_call` arguments and
custom tool inputs, `reasoning_content`, `thinking_blocks`, `reasoning_items`, compaction blocks), a completion's `prompt`, `suffix` and `prediction`, Anthropic Messages' `system`
and content blocks (text, thinking, tool_use input, tool_result content) and the Responses API's
`instructions` and `input` items (messages with text and refusal parts, function-call arguments and
outputs, reasoning summaries). Texts the gateway wrote itself (prompt pack, retrieved context:
`RequestContext.authored`) are skipped when passed as `skip`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Collection

from . import endpoints

CHAT_CALLS = frozenset({"completion", "acompletion"})
TEXT_CALLS = frozenset({"text_completion", "atext_completion"})
# the call types the gateway routes and guards; /v1/responses and /v1/messages are bridged to chat
PROMPT_CALLS = CHAT_CALLS | TEXT_CALLS | endpoints.AGENT_CALLS

# where request text lives
TEXT_FIELDS = ("messages", "prompt", "suffix", "prediction", "input", "instructions", "system")
# content parts / blocks whose text the walker reads; any other part carries no text (images, audio, files)
TEXT_PARTS = frozenset({"text", "input_text", "output_text", "refusal", "thinking", "redacted_thinking",
                        "tool_use", "tool_result", "summary_text", "reasoning_text"})
CALLER_ROLES = ("user", "assistant", "tool", "function")  # every role but the client's own system prompt

Map = Callable[[str], str]


def content_texts(content) -> list[str]:
    """The text of one message content: a string, or the `text` of each typed part."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


# What an external upstream receives besides the texts above, redacted by egress as a whole. Structured fields:
# messages, items and parts, tool definitions and output schemas, where protocol values stay (`PROTOCOL_KEYS`).
# Free fields, every string mapped: user ids, stop sequences, prompt_cache_key, extra_body, web-search options and
# the client's own metadata (LiteLLM's is then `litellm_metadata`: /v1/messages, /v1/responses).
EGRESS_FIELDS = (*TEXT_FIELDS, "tools", "functions", "response_format", "text")
EGRESS_FREE_FIELDS = ("user", "stop", "stop_sequences", "safety_identifier", "prompt_cache_key", "extra_body",
                      "web_search_options")
# inside structured fields, values of the caller's (mapped whole): a tool call's input, metadata, schema values
CALLER_VALUES = frozenset({"input", "metadata", "extra_body", "default", "enum", "const", "examples"})
# string values that are protocol, not text: enum-like fields, ids, schema structure, opaque signed blobs; also
# `name` (what a model calls) but on a message (a participant's name), `data` of a redacted thinking block
PROTOCOL_KEYS = frozenset({"role", "type", "id", "call_id", "tool_call_id", "tool_use_id", "status", "format",
                           "pattern", "required", "$ref", "$schema", "media_type", "detail", "signature",
                           "encrypted_content"})


def map_egress(data: dict, fn: Map, extra: tuple[str, ...] = ()) -> dict:
    """New values of every field of `data` an upstream receives that can carry caller text, with `fn` over every
    caller string: `EGRESS_FIELDS` (and the `extra` fields the provider gets as they are, e.g. a guided-decoding
    schema) keep their protocol values, `EGRESS_FREE_FIELDS` (and `metadata` where it is the client's own) keep
    nothing. `data` itself is not changed (LiteLLM shares it between a request's attempts)."""
    free = (*EGRESS_FREE_FIELDS, *(("metadata",) if "litellm_metadata" in data else ()))
    return {**{k: map_structured(data[k], fn) for k in (*EGRESS_FIELDS, *extra) if k in data},
            **{k: map_value(data[k], fn) for k in free if k in data}}


def map_structured(value, fn: Map):
    """`fn` over every string of a request's structured fields but protocol values (`PROTOCOL_KEYS`, a tool's or
    call's `name`, a redacted thinking block's `data`); a tool call's arguments (JSON text, or a `tool_use` block's
    `input`) by their strings and object keys (data there: `{"owners": {"kim@x.io": ...}}`), `CALLER_VALUES` whole.
    A new value; the input is not changed."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_structured(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) if _protocol(k, v, value)
                else map_value(v, fn, fn if k == "input" and value.get("type") == "tool_use" else None)
                if k in CALLER_VALUES and not isinstance(v, str)
                else map_json_strings(v, fn, fn) if k == "arguments" and isinstance(v, str) else map_structured(v, fn)
                for k, v in value.items()}
    return value


def _copy(value):
    """A protocol value as it is: a string, or a new list of strings (not one shared with the request)."""
    return list(value) if isinstance(value, list) else value


def _protocol(key: str, value, holder: dict) -> bool:
    if not (isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return False
    return key in PROTOCOL_KEYS or key == "name" and "role" not in holder or \
        key == "data" and holder.get("type") == "redacted_thinking"


def text_copy(data: dict) -> dict:
    """Deep copies of the request fields that carry text (`TEXT_FIELDS`), to redact without touching the
    originals, which LiteLLM shares between a request's attempts."""
    return {k: copy.deepcopy(data[k]) for k in TEXT_FIELDS if k in data}


def non_text_parts(data: dict, authored: Collection[str] = ()) -> list[str]:
    """Paths of content parts that carry no text (images, audio, files), in `messages` and `input`, numbered
    as the client sent them: messages whose content the gateway wrote (`authored`: its pack) are not counted."""
    out = []
    for field in ("messages", "input"):
        items = data.get(field)
        ours = 0
        for i, m in enumerate(items if isinstance(items, list) else ()):
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, str) and content in authored:
                ours += 1
            for j, p in enumerate(content if isinstance(content, list) else ()):
                kind = p.get("type") if isinstance(p, dict) else None
                if kind not in TEXT_PARTS and not (isinstance(p, dict) and isinstance(p.get("text"), str)):
                    out.append(f"{field}[{i - ours}].content[{j}] ({kind})")
    return out


def map_json_strings(text: str, fn: Map, keys: Map | None = None) -> str:
    """`fn` over every string inside a JSON document (the raw text when it is not JSON), `keys` over its object
    keys when given; the text itself when nothing changed."""
    try:
        value = json.loads(text)
    except ValueError:
        return fn(text)
    mapped = map_value(value, fn, keys)
    return text if mapped == value else json.dumps(mapped, ensure_ascii=False)


def map_value(value, fn: Map, keys: Map | None = None):
    """`fn` over every string of a JSON-like value, and `keys` over its object keys when given (a model's tool-call
    arguments: `{"env": {"<SECRET_1>": "1"}}`; elsewhere keys are protocol); a new value, the input is not changed."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_value(v, fn, keys) for v in value]
    if isinstance(value, dict):
        return {keys(k) if keys and isinstance(k, str) else k: map_value(v, fn, keys) for k, v in value.items()}
    return value


def _map_authored(text: str, fn: Map, authored: Collection[str]) -> str:
    """A text the gateway prefixed with its own (pack before a client's system prompt): only the caller's part."""
    if text in authored:
        return text
    for head in authored:
        if text.startswith(head + endpoints.PACK_SEPARATOR):
            rest = text[len(head) + len(endpoints.PACK_SEPARATOR):]
            return head + endpoints.PACK_SEPARATOR + _map_authored(rest, fn, authored)
    return fn(text)


class _Walk:
    """One pass of `map_request_texts`: which roles and parts are visited, and how."""

    def __init__(self, fn: Map, skip: Collection[str], roles: Collection[str] | None, tool_arguments: bool):
        self.fn, self.skip, self.roles, self.tool_arguments = fn, skip, roles, tool_arguments

    def text(self, role: str, text: str) -> str:
        if self.roles is not None and role not in self.roles:
            return text
        return _map_authored(text, self.fn, self.skip)

    def arguments(self, role: str, arguments: str) -> str:
        """Tool-call arguments (JSON text): their strings and object keys, when tool arguments are visited."""
        if not self.tool_arguments or (self.roles is not None and role not in self.roles):
            return arguments
        return map_json_strings(arguments, self.fn, self.fn)

    def content(self, role: str, content):
        """A string content or a list of typed parts / blocks of any of the three formats."""
        if isinstance(content, str):
            return self.text(role, content)
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict):
                self.part(role, part)
        return content

    def part(self, role: str, part: dict) -> None:
        kind = part.get("type")
        for field in ("text", "refusal", "thinking"):  # text / input_text / output_text, refusal, thinking
            if isinstance(part.get(field), str):
                part[field] = self.text(role, part[field])
        if kind == "tool_use" and isinstance(part.get("input"), dict) and self.tool_arguments:
            if self.roles is None or role in self.roles:
                part["input"] = map_value(part["input"], self.fn, self.fn)
        elif kind == "tool_result" and "content" in part:
            part["content"] = self.content("tool", part["content"])

    def message(self, m: dict) -> None:
        role = str(m.get("role") or "user")
        if "content" in m:
            m["content"] = self.content(role, m.get("content"))
        for field in ("reasoning_content", "thinking", "refusal"):
            if isinstance(m.get(field), str):
                m[field] = self.text(role, m[field])
        # earlier reasoning LiteLLM forwards: Anthropic thinking blocks and compaction blocks, Responses items
        extra = m.get("provider_specific_fields")
        for block in [*_dicts(m.get("thinking_blocks")),
                      *_dicts(extra.get("compaction_blocks") if isinstance(extra, dict) else None)]:
            for field in ("thinking", "content"):
                if isinstance(block.get(field), str):
                    block[field] = self.text(role, block[field])
        for item in _dicts(m.get("reasoning_items")):
            for field in ("summary", "content"):
                self.content(role, item.get(field))
        for call in _dicts(m.get("tool_calls")):
            custom = call.get("custom")  # a custom (freeform) tool call: its input is plain text
            if isinstance(custom, dict) and isinstance(custom.get("input"), str):
                custom["input"] = self.arguments(role, custom["input"])
        funcs = [c.get("function") for c in _dicts(m.get("tool_calls"))]
        for func in [*funcs, m.get("function_call")]:
            if isinstance(func, dict) and isinstance(func.get("arguments"), str):
                func["arguments"] = self.arguments(role, func["arguments"])

    def item(self, item: dict) -> None:
        """A Responses `input` item: message, function call / output, reasoning."""
        kind = item.get("type", "message")
        if kind == "function_call" and isinstance(item.get("arguments"), str):
            item["arguments"] = self.arguments("assistant", item["arguments"])
        elif kind == "function_call_output" and "output" in item:
            item["output"] = self.content("tool", item["output"])
        elif kind == "reasoning":
            for field in ("summary", "content"):
                self.content("assistant", item.get(field))
        else:
            self.message(item)


def _dicts(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def map_request_texts(data: dict, fn: Map, *, skip: Collection[str] = (), roles: Collection[str] | None = None,
                      tool_arguments: bool = True) -> None:
    """Replace every caller text of a request, in any endpoint's format, by `fn(text)`, in place: texts of
    messages with one of `roles` (all when None; tool results count as `tool`, system prompts and
    instructions as `system`, prompt / suffix / prediction as `user`), tool-call arguments unless
    `tool_arguments` is False."""
    walk = _Walk(fn, skip, roles, tool_arguments)
    for field in ("system", "instructions"):
        if field in data:
            data[field] = walk.content("system", data[field])
    for m in data.get("messages") or ():
        if isinstance(m, dict):
            walk.message(m)
    items = data.get("input")
    if isinstance(items, str):
        data["input"] = walk.text("user", items)
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            walk.item(item)
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        data["prompt"] = walk.text("user", prompt)
    elif isinstance(prompt, list):
        data["prompt"] = [walk.text("user", p) if isinstance(p, str) else p for p in prompt]
    if isinstance(data.get("suffix"), str):  # fill-in-the-middle: the code after the cursor
        data["suffix"] = walk.text("user", data["suffix"])
    prediction = data.get("prediction")  # OpenAI predicted outputs: usually the whole file
    if isinstance(prediction, dict) and "content" in prediction:
        prediction["content"] = walk.content("user", prediction["content"])


def request_texts(data: dict, **which) -> list[str]:
    """Every text `map_request_texts` visits (`which`: its keyword arguments). It walks `data` itself:
    each value it writes back is equal to the one it read."""
    out: list[str] = []

    def collect(text: str) -> str:
        out.append(text)
        return text

    map_request_texts(data, collect, **which)
    return out


def strings_of(value) -> list[str]:
    """Every string in `value` (nested lists and objects, keys not included)."""
    out: list[str] = []
    map_value(value, lambda text: out.append(text) or text)
    return out


def prompt_text(data: dict) -> str:
    """All text a request sends, joined (what routing counts tokens of)."""
    return "\n".join(request_texts(data))


# What clients put into a user turn for the model besides the user's words: Claude Code's <system-reminder>
# blocks (git attribution, environment, skills), Codex's <environment_context> and <user_instructions>.
CLIENT_BLOCKS = ("system-reminder", "environment_context", "user_instructions")
_BLOCK_OPEN = re.compile(r"[\s\ufeff\u200b]*<(" + "|".join(CLIENT_BLOCKS) + r")>")
_BLOCK_CLOSE = re.compile(r"</(" + "|".join(CLIENT_BLOCKS) + r")>[ \t]*$")


def users_words(text: str) -> str:
    """`text` without the client blocks at its head and its end, each a whole block on its own lines (a part
    that is only blocks gives ""); a tag mid-text, one never closed or one closed mid-line is the user's own.
    Linear: each block is found once, by its closing tag (tags in any case)."""
    low = text.lower()
    start, end = 0, len(text)
    while (m := _BLOCK_OPEN.match(low, start, end)) is not None:
        tag = f"</{m.group(1)}>"
        close = low.find(tag, m.end(), end)
        after = close + len(tag)
        while 0 <= close and after < end and low[after] in " \t":
            after += 1
        if close < 0 or after < end and low[after] not in "\r\n":
            break
        start = after
    while True:
        stop = end
        while stop > start and low[stop - 1].isspace():
            stop -= 1
        line = low.rfind("\n", start, stop) + 1
        m = _BLOCK_CLOSE.search(low, max(line, start), stop)
        opening = low.rfind(f"<{m.group(1)}>", start, m.start()) if m else -1
        if opening < 0 or low[low.rfind("\n", start, opening) + 1 : opening].strip("\ufeff\u200b \t"):
            break
        end = opening
    return text[start:end].strip()


def _only_client_context(content) -> bool:
    """A user turn with nothing of the user's: tool results and client blocks only (Claude Code after a tool ran)."""
    return isinstance(content, list) and bool(content) and all(
        isinstance(p, dict) and (p.get("type") == "tool_result" or isinstance(p.get("text"), str)
                                 and p["text"].strip() and not users_words(p["text"])) for p in content)


def last_user_text(messages: list | str) -> str:
    """The user's words in the last user turn (what retrieval searches for, what auxiliary calls are told by),
    without the context blocks clients add to it; a turn of tool results and client blocks only leaves the
    question to the turn before. Chat or Anthropic messages, or Responses input items."""
    if isinstance(messages, str):
        return users_words(messages)
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user" and m.get("type", "message") == "message":
            words = "\n".join(w for w in map(users_words, content_texts(m.get("content"))) if w)
            if words or not _only_client_context(m.get("content")):
                return words
    return ""


def last_user_words(data: dict, call_type: str) -> str:
    """`last_user_text` of a request of any endpoint (Responses keep their turns in `input`)."""
    return last_user_text(data.get("input") if call_type in endpoints.RESPONSES_CALLS else data.get("messages"))
