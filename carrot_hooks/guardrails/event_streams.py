"""Output guardrails over the agent endpoints' answers: Anthropic Messages event streams (SSE bytes, as
LiteLLM's bridge yields them) and OpenAI Responses event streams, plus their non-streamed bodies.

Text deltas go through a `StreamFilter` per content block (the same holdback window as chat streams);
tool-call arguments (`input_json_delta`, `function_call_arguments.delta`) are held whole and checked
once complete, then sent as one delta. The `.done` / `completed` events that repeat the full text carry
the checked text, so no copy of a finding leaks through a summary event.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ..messages import map_value
from .stream import StreamFilter


@dataclass
class OutputChecks:
    """What the output guardrail supplies: a filter per text block, a checker for complete tool
    arguments (JSON text in, checked JSON text out), a whole-text checker, and the note for a block."""

    new_filter: Callable[[], StreamFilter]
    check_arguments: Callable[[str], str]
    check_text: Callable[[str], str]
    closing_note: Callable[[StreamFilter], str]
    callers_instructions: Callable[[str], str | None] = lambda text: text  # what a Responses answer repeats


def _get(obj, key, default=None):
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def _put(obj, key, value) -> None:
    if isinstance(obj, dict):
        obj[key] = value
    else:
        setattr(obj, key, value)


# --- Anthropic Messages --------------------------------------------------------------------------

def _frame(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _parse_frame(frame: bytes) -> tuple[str | None, dict | None]:
    event, data = None, []
    for line in frame.decode("utf-8", errors="replace").splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    try:
        payload = json.loads("\n".join(data)) if data else None
    except ValueError:
        payload = None
    return event or (payload or {}).get("type"), payload if isinstance(payload, dict) else None


# Anthropic blocks whose text streams: type → (text field, delta type)
_TEXT_BLOCKS = {"text": ("text", "text_delta"), "thinking": ("thinking", "thinking_delta")}


class _AnthropicBlocks:
    """Per content block state: a text filter, or the tool input JSON held until the block stops."""

    def __init__(self, checks: OutputChecks):
        self.checks = checks
        self.text: dict[int, StreamFilter] = {}
        self.kind: dict[int, tuple[str, str]] = {}  # a text block's field and delta type
        self.tool: dict[int, list[str]] = {}

    def frames(self, event: str | None, data: dict | None, raw: bytes) -> list[bytes]:
        if data is None:
            return [raw]
        index = data.get("index", 0)
        if event == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") in _TEXT_BLOCKS:
                field, kind = _TEXT_BLOCKS[block["type"]]
                self.text[index] = self.checks.new_filter()
                self.kind[index] = (field, kind)
                seed = block.get(field) or ""
                block[field] = ""
                return [_frame(event, data)] + self._text(index, self.text[index].feed(seed))
            if block.get("type") == "tool_use":
                self.tool[index] = [json.dumps(block["input"])] if block.get("input") else []
                block["input"] = {}
                return [_frame(event, data)]
            return [raw]
        if event == "content_block_delta":
            delta = data.get("delta") or {}
            if index in self.text and delta.get("type") == self.kind[index][1]:
                return self._text(index, self.text[index].feed(delta.get(self.kind[index][0]) or ""))
            if delta.get("type") == "input_json_delta" and index in self.tool:
                self.tool[index].append(delta.get("partial_json") or "")
                return []
            return [raw]
        if event == "content_block_stop":
            out: list[bytes] = []
            if index in self.text:
                f = self.text.pop(index)
                out = self._text(index, f.finish() + self.checks.closing_note(f))
            elif index in self.tool:
                arguments = "".join(self.tool.pop(index)) or "{}"
                checked = self.checks.check_arguments(arguments)
                out = [_frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                                      "delta": {"type": "input_json_delta", "partial_json": checked}})]
            return out + [raw]
        if event == "message_delta" and isinstance(data.get("delta"), dict):  # stop details may explain in text
            data["delta"] = map_value(data["delta"], self.checks.check_text)
            return [_frame(event, data)]
        return [raw]

    def _text(self, index: int, text: str) -> list[bytes]:
        if not text:
            return []
        field, kind = self.kind.get(index, ("text", "text_delta"))
        return [_frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": kind, field: text}})]


async def filter_anthropic_stream(stream: AsyncIterator, checks: OutputChecks) -> AsyncIterator[bytes]:
    """Anthropic SSE (bytes or str chunks, frames possibly split across chunks) → checked SSE frames."""
    blocks = _AnthropicBlocks(checks)
    buffer = b""
    async for chunk in stream:
        if isinstance(chunk, dict):  # an already parsed event
            chunk = _frame(str(chunk.get("type")), chunk)
        buffer += chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        buffer = buffer.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            if not raw.strip():
                continue
            event, data = _parse_frame(raw)
            for out in blocks.frames(event, data, raw + b"\n\n"):
                yield out
    if buffer.strip():
        event, data = _parse_frame(buffer)
        for out in blocks.frames(event, data, buffer + b"\n\n"):
            yield out


def check_anthropic_message(message, checks: OutputChecks):
    """A non-streamed Anthropic message (dict or object): text blocks and tool inputs checked."""
    for block in _get(message, "content") or []:
        btype = _get(block, "type")
        if btype in _TEXT_BLOCKS:
            field = _TEXT_BLOCKS[btype][0]
            _put(block, field, checks.check_text(_get(block, field) or ""))
        elif btype == "tool_use":
            _put(block, "input", json.loads(checks.check_arguments(json.dumps(_get(block, "input") or {}))))
    return message


# --- OpenAI Responses ----------------------------------------------------------------------------

class _ResponsesState:
    def __init__(self, checks: OutputChecks):
        self.checks = checks
        self.text: dict[tuple, StreamFilter] = {}
        self.released: dict[tuple, str] = {}
        self.template: dict[tuple, object] = {}
        self.arguments: dict[int, list[str]] = {}
        self.checked_arguments: dict[int, str] = {}
        self.arg_template: dict[int, object] = {}

    def _key(self, event, family: str) -> tuple:
        return (family, _get(event, "output_index", 0), _get(event, "content_index", _get(event, "summary_index", 0)))

    def _emit_text(self, key: tuple, text: str) -> list:
        if not text or key not in self.template:
            return []
        out = copy.deepcopy(self.template[key])
        _put(out, "delta", text)
        if _get(out, "logprobs"):  # held-back text no longer lines up with the upstream's token logprobs
            _put(out, "logprobs", [])
        self.released[key] = self.released.get(key, "") + text
        return [out]

    def events(self, event) -> list:
        kind = _get(event, "type")
        family = _family(kind)
        if family is not None and kind.endswith(".delta"):
            key = self._key(event, family)
            f = self.text.setdefault(key, self.checks.new_filter())
            self.template.setdefault(key, copy.deepcopy(event))
            return self._emit_text(key, f.feed(_get(event, "delta") or ""))
        if family is not None and kind.endswith(".done"):
            key = self._key(event, family)
            f = self.text.pop(key, None)
            out = self._emit_text(key, f.finish() + self.checks.closing_note(f)) if f is not None else []
            field = "refusal" if family == "refusal" else "text"
            released = self.released.get(key)
            _put(event, field, released if released is not None else self.checks.check_text(_get(event, field) or ""))
            if _get(event, "logprobs"):
                _put(event, "logprobs", [])
            return out + [event]
        if kind in ("response.content_part.added", "response.content_part.done",
                    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done"):
            part = _get(event, "part")
            if part is not None:
                self._part(part, self._key(event, _family_of_part(part)))
            return [event]
        if kind == "response.function_call_arguments.delta":
            index = _get(event, "output_index", 0)
            self.arguments.setdefault(index, []).append(_get(event, "delta") or "")
            self.arg_template.setdefault(index, copy.deepcopy(event))
            return []
        if kind == "response.function_call_arguments.done":
            index = _get(event, "output_index", 0)
            checked = self._arguments(index, _get(event, "arguments"))
            _put(event, "arguments", checked)
            out = []
            if index in self.arg_template:
                delta = copy.deepcopy(self.arg_template[index])
                _put(delta, "delta", checked)
                out.append(delta)
            return out + [event]
        if kind == "response.output_item.done":
            self._item(_get(event, "item"), _get(event, "output_index", 0))
            return [event]
        if kind == "response.output_item.added":  # usually empty; checked whole, nothing remembered
            item = _get(event, "item")
            if item is not None and _get(item, "type") == "function_call":  # its arguments stream after it
                if _get(item, "arguments"):
                    _put(item, "arguments", self.checks.check_arguments(_get(item, "arguments")))
            elif item is not None:
                self._item(item, _get(event, "output_index", 0))
            return [event]
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = _get(event, "response")
            for i, item in enumerate(_get(response, "output") or [] if response is not None else []):
                self._item(item, i)
        if isinstance(kind, str) and kind.startswith("response.") and _get(event, "response") is not None:
            self.echo(_get(event, "response"))
        return [event]

    def echo(self, response) -> None:
        """The request's `instructions` a Responses body repeats: the client's own, as sent (no pack, no
        context, no egress placeholders)."""
        if isinstance(_get(response, "instructions"), str):
            _put(response, "instructions", self.checks.callers_instructions(_get(response, "instructions")))

    def _arguments(self, index: int, full: str | None) -> str:
        if index not in self.checked_arguments:
            text = full if full is not None else "".join(self.arguments.get(index, [])) or "{}"
            self.checked_arguments[index] = self.checks.check_arguments(text)
        return self.checked_arguments[index]

    def _item(self, item, index: int) -> None:
        if item is None:
            return
        kind = _get(item, "type")
        if kind == "function_call":
            _put(item, "arguments", self._arguments(index, _get(item, "arguments")))
        elif kind in ("message", "reasoning"):
            for field in ("content", "summary"):
                for j, part in enumerate(_get(item, field) or []):
                    self._part(part, (_family_of_part(part), index, j))

    def _part(self, part, key: tuple) -> None:
        """A content / summary part: its text as released through the stream, else checked whole."""
        field = "refusal" if _get(part, "type") == "refusal" else "text"
        if isinstance(_get(part, field), str):
            released = self.released.get(key)
            _put(part, field, released if released is not None else self.checks.check_text(_get(part, field)))
        if _get(part, "logprobs"):
            _put(part, "logprobs", [])


# Responses events whose deltas carry text, by family: answer text, refusal, reasoning, reasoning summary
_FAMILIES = {"response.output_text.": "output_text", "response.refusal.": "refusal",
             "response.reasoning_text.": "reasoning_text", "response.reasoning_summary_text.": "summary_text"}


def _family(kind) -> str | None:
    for prefix, family in _FAMILIES.items():
        if isinstance(kind, str) and kind.startswith(prefix):
            return family
    return None


def _family_of_part(part) -> str:
    """The delta family whose released text a part of this type repeats."""
    kind = _get(part, "type")
    return kind if kind in ("refusal", "reasoning_text", "summary_text") else "output_text"


async def filter_responses_stream(stream: AsyncIterator, checks: OutputChecks) -> AsyncIterator:
    """Responses API stream events (objects or dicts) → the same events, checked."""
    state = _ResponsesState(checks)
    async for event in stream:
        for out in state.events(event):
            yield out


def check_responses_body(response, checks: OutputChecks):
    """A non-streamed Responses body: output texts and function-call arguments checked."""
    state = _ResponsesState(checks)
    for i, item in enumerate(_get(response, "output") or []):
        state._item(item, i)
    state.echo(response)
    return response
