"""Output guardrails over the agent endpoints' answers: Anthropic Messages event streams (SSE bytes, as
LiteLLM's bridge yields them) and OpenAI Responses event streams, plus their non-streamed bodies.

Text deltas go through a `StreamFilter` per content block (the same holdback window as chat streams);
tool calls (`tool_use` blocks with their `input_json_delta`s, `function_call` items with their
`function_call_arguments.delta`s) are held whole and checked once complete, then sent as one delta; a call
a block rule hits never reaches the client: it becomes a text block / message item holding the notice
(the client has no call to run). The `.done` / `completed` events that repeat the full text carry the
checked text, so no copy of a finding leaks through a summary event. The event that ends the answer
(`message_delta`, `response.completed` / `incomplete` / `failed`) carries the verdict summary as
`carrot_guardrails`, as the last chunk of a chat stream does.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from ..messages import map_value
from .answers import notice
from .stream import StreamFilter


@dataclass
class OutputChecks:
    """What the output guardrail supplies: a filter per text block, checkers for complete tool arguments
    (JSON text in; checked text and, when the call must not go out, the notice that takes its place, else "")
    and whole texts (checked text and the block rules it hit), the note for a block, and what an upstream
    error mid-answer is reported as."""

    new_filter: Callable[[], StreamFilter]
    check_arguments: Callable[[str], tuple[str, str]]
    check_whole: Callable[[str], tuple[str, tuple[str, ...]]]
    closing_note: Callable[..., str]  # over the given filters and everything checked whole so far
    failure: Callable[[Exception], Awaitable[tuple[int, str]]]  # an upstream error mid-answer: reported; status, message
    callers_instructions: Callable[[str], str | None] = lambda text: text  # what a Responses answer repeats
    summary: Callable[[], str] = lambda: "none"  # the verdicts once the answer is complete (`carrot_guardrails`)

    def check_text(self, text: str) -> str:
        return self.check_whole(text)[0]


def _get(obj, key, default=None):
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def _put(obj, key, value) -> None:
    if isinstance(obj, dict):
        obj[key] = value
    else:
        setattr(obj, key, value)


log = logging.getLogger("carrot.guardrails")


def _flag_note(checks: OutputChecks, *filters: StreamFilter) -> str:
    """The note on what a whole answer's texts (`filters`: those that streamed) and tool calls had flagged ("" when
    nothing), as a chat answer gets it: a client shows the text block or message item it goes into."""
    return checks.closing_note(*filters).strip()


class _StreamedAnswer:
    """What a streamed answer's flag note needs: every text's filter and the notes the texts closed with."""

    def __init__(self, checks: OutputChecks):
        self.checks = checks
        self.filters: list[StreamFilter] = []
        self.said: set[str] = set()

    def new_filter(self) -> StreamFilter:
        self.filters.append(self.checks.new_filter())
        return self.filters[-1]

    def closing_note(self, f: StreamFilter) -> str:
        note = self.checks.closing_note(f)
        self.said.add(note.strip())
        return note

    def unsaid_note(self) -> str:
        """The whole answer's flag note when no text closed with it, else "": a call flagged after the texts ended
        (Claude Code and Codex ran it with no sign), as the note of a whole answer (`_flag_note`)."""
        note = _flag_note(self.checks, *self.filters)
        return "" if note in self.said else note


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


class _AnthropicBlocks(_StreamedAnswer):
    """Per content block state: a text filter, or the tool input JSON held until the block stops."""

    def __init__(self, checks: OutputChecks):
        super().__init__(checks)
        self.next_index = 0  # the first index no block has taken: the flag note's block
        self.text: dict[int, StreamFilter] = {}
        self.kind: dict[int, tuple[str, str]] = {}  # a text block's field and delta type
        self.tool: dict[int, list[str]] = {}
        self.tool_start: dict[int, dict] = {}  # a tool_use block's start, sent once its input passed
        self.calls = self.blocked = 0
        self.text_blocked = False  # a block rule hit a text or thinking block: later blocks are not sent (a whole
        # answer has only the notice, `check_anthropic_message`; a chat stream ends there)
        self.dropped: set[int] = set()  # blocks begun after that
        self.call_blocked = False  # a block rule hit a call: the turn ends there, no later call is sent

    def frames(self, event: str | None, data: dict | None, raw: bytes) -> list[bytes]:
        if data is None:
            return [raw]
        index = data.get("index", 0)
        if event == "content_block_start":
            self.next_index = max(self.next_index, index + 1)
        if event == "content_block_start" and (self.text_blocked or any(g.blocked for g in self.text.values()) or (
                self.call_blocked and (data.get("content_block") or {}).get("type") == "tool_use")):
            self.dropped.add(index)
            self.blocked += (data.get("content_block") or {}).get("type") == "tool_use"
            return []
        if index in self.dropped and event in ("content_block_delta", "content_block_stop"):
            return []
        if event == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") in _TEXT_BLOCKS:
                field, kind = _TEXT_BLOCKS[block["type"]]
                self.text[index] = self.new_filter()
                self.kind[index] = (field, kind)
                seed = block.get(field) or ""
                block[field] = ""
                return [_frame(event, data)] + self._text(index, self.text[index].feed(seed))
            if block.get("type") == "tool_use":
                self.tool[index] = [json.dumps(block["input"])] if block.get("input") else []
                block["input"] = {}
                self.tool_start[index] = data
                return []
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
                out = self._text(index, f.finish() + self.closing_note(f))
                self.text_blocked = self.text_blocked or bool(f.blocked)
            elif index in self.tool and (self.text_blocked or any(g.blocked for g in self.text.values())):
                # begun before the block rule hit: the notice stands for the whole answer
                del self.tool[index], self.tool_start[index]
                self.blocked += 1
                return []
            elif index in self.tool:
                checked, blocked = self.checks.check_arguments("".join(self.tool.pop(index)) or "{}")
                start = self.tool_start.pop(index)
                if blocked:  # the call becomes a text block holding the notice
                    self.blocked += 1
                    self.call_blocked = True
                    start["content_block"] = {"type": "text", "text": ""}
                    delta = {"type": "text_delta", "text": blocked}
                else:
                    self.calls += 1
                    delta = {"type": "input_json_delta", "partial_json": checked}
                out = [_frame("content_block_start", start),
                       _frame("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})]
            return out + [raw]
        if event == "message_delta" and isinstance(data.get("delta"), dict):  # stop details may explain in text
            data["delta"] = map_value(data["delta"], self.checks.check_text)
            if self.blocked and not self.calls and data["delta"].get("stop_reason") == "tool_use":
                data["delta"]["stop_reason"] = "end_turn"  # no call is left to run
            data["carrot_guardrails"] = self.checks.summary()
            return self._note_block() + [_frame(event, data)]
        return [raw]

    def _note_block(self) -> list[bytes]:
        """A text block of its own holding the flag note no text carried (none once a block rule hit)."""
        note = "" if self.blocked or self.text_blocked else self.unsaid_note()
        if not note:
            return []
        self.said.add(note)  # once, should the upstream send a second message_delta
        index, self.next_index = self.next_index, self.next_index + 1
        start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        return [_frame("content_block_start", start), *self._text(index, note),
                _frame("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _text(self, index: int, text: str) -> list[bytes]:
        if not text:
            return []
        field, kind = self.kind.get(index, ("text", "text_delta"))
        return [_frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                               "delta": {"type": kind, field: text}})]


async def _failure(checks: OutputChecks, e: Exception, ended: bool) -> tuple[str, int, str] | None:
    """An upstream error mid-answer: the verdicts (recorded before the failure's request-log line is written),
    then the status and message it is reported as; None after a complete answer (nothing to report)."""
    if ended:
        log.warning("the upstream failed after a complete answer (ignored): %s", e)
        return None
    verdicts = checks.summary()
    return (verdicts, *await checks.failure(e))


# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors); others are api_error
_ANTHROPIC_ERRORS = {400: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error"}


async def filter_anthropic_stream(stream: AsyncIterator, checks: OutputChecks) -> AsyncIterator[bytes]:
    """Anthropic SSE (bytes or str chunks, frames possibly split across chunks) → checked SSE frames. An
    upstream that fails mid-answer ends it in an `error` event (LiteLLM's bridge raised it out of the
    response, which dropped the connection); what the holdback still holds is not released."""
    blocks = _AnthropicBlocks(checks)
    buffer = b""
    ended = False  # message_stop went out: the answer is complete
    try:
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
                ended = ended or event == "message_stop"
                for out in blocks.frames(event, data, raw + b"\n\n"):
                    yield out
    except Exception as e:  # noqa: BLE001 - the client gets the error in the stream's own format
        failed = await _failure(checks, e, ended)
        if failed is not None:
            verdicts, status, message = failed
            yield _frame("error", {"type": "error", "error": {"type": _ANTHROPIC_ERRORS.get(status, "api_error"),
                                                              "message": message}, "carrot_guardrails": verdicts})
        return
    if buffer.strip():
        event, data = _parse_frame(buffer)
        for out in blocks.frames(event, data, buffer + b"\n\n"):
            yield out


def check_anthropic_message(message, checks: OutputChecks):
    """A non-streamed Anthropic message (dict or object): text blocks and tool inputs checked; a blocked
    tool call becomes a text block holding the notice, and a block rule in the text leaves only the notice
    (as a chat answer)."""
    content = list(_get(message, "content") or [])
    blocked_text: list[str] = []
    call_blocked = False  # the turn ends at a blocked call: no later call is kept
    for i, block in enumerate(content):
        btype = _get(block, "type")
        if btype in _TEXT_BLOCKS:
            field = _TEXT_BLOCKS[btype][0]
            text, blocked = checks.check_whole(_get(block, field) or "")
            _put(block, field, text)
            blocked_text += blocked
        elif btype == "tool_use" and call_blocked:
            content[i] = None
        elif btype == "tool_use":
            checked, blocked = checks.check_arguments(json.dumps(_get(block, "input") or {}))
            if blocked:
                content[i], call_blocked = {"type": "text", "text": blocked}, True
            else:
                _put(block, "input", json.loads(checked))
    content = [b for b in content if b is not None]
    if blocked_text:
        content = [{"type": "text", "text": notice(blocked_text)}]
    elif not call_blocked and (note := _flag_note(checks)):
        content.append({"type": "text", "text": note})
    if _get(message, "content") is not None:
        _put(message, "content", content)
    if _get(message, "stop_reason") == "tool_use" and not any(_get(b, "type") == "tool_use" for b in content):
        _put(message, "stop_reason", "end_turn")
    return message


# --- OpenAI Responses ----------------------------------------------------------------------------

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class _ResponsesState(_StreamedAnswer):
    def __init__(self, checks: OutputChecks):
        super().__init__(checks)
        self.text: dict[tuple, StreamFilter] = {}
        self.released: dict[tuple, str] = {}
        self.template: dict[tuple, object] = {}
        self.arguments: dict[int, list[str]] = {}
        self.checked_arguments: dict[str, tuple[str, str]] = {}  # by the arguments' own text
        self.arg_template: dict[int, object] = {}
        self.opened: dict[int, object] = {}  # a function call's output_item.added, sent once its arguments passed
        self.replaced: set[int] = set()  # output indices whose blocked call a message already took the place of
        self.blocked_text: list[str] = []  # block rules hit in texts checked whole
        self.blocked_call: int | None = None  # the first call a block rule hit: the turn ends there
        self.response = None  # the response object the last lifecycle event carried

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
            if key not in self.text and self._text_blocked():  # begun after a block rule hit: not sent
                self.released.setdefault(key, "")
                return []
            if key not in self.text:  # built on the first delta only: `setdefault` built both on every chunk
                self.text[key] = self.new_filter()
            if key not in self.template:
                self.template[key] = copy.deepcopy(event)
            return self._emit_text(key, self.text[key].feed(_get(event, "delta") or ""))
        if family is not None and kind.endswith(".done"):
            key = self._key(event, family)
            f = self.text.pop(key, None)
            out = self._emit_text(key, f.finish() + self.closing_note(f)) if f is not None else []
            self.blocked_text += f.blocked if f is not None else ()
            field = "refusal" if family == "refusal" else "text"
            released = self._released(key)
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
            if index not in self.arg_template:
                self.arg_template[index] = copy.deepcopy(event)
            return []
        if kind == "response.function_call_arguments.done":
            index = _get(event, "output_index", 0)
            flushed = self._flush_texts()
            if self._no_call(index):  # the notice of a blocked text or an earlier blocked call stands for it
                self.opened.pop(index, None)
                self.replaced.add(index)
                return flushed
            checked, blocked = self._arguments(index, _get(event, "arguments"))
            if blocked:  # the call is never opened: a message holding the notice takes its place
                self.opened.pop(index, None)
                self.replaced.add(index)
                return flushed + _message_events(event, index, blocked)
            _put(event, "arguments", checked)
            out = flushed + ([self.opened.pop(index)] if index in self.opened else [])
            if index in self.arg_template:
                delta = copy.deepcopy(self.arg_template[index])
                _put(delta, "delta", checked)
                out.append(delta)
            return out + [event]
        if kind == "response.output_item.done":
            index, item = _get(event, "output_index", 0), _get(event, "item")
            if _get(item, "type") != "function_call":
                self._item(item, index)
                return [event]
            opened = self.opened.pop(index, None)  # still held: its arguments came whole, not as events
            flushed = self._flush_texts()
            if index in self.replaced or self._no_call(index):  # replaced at arguments.done, or after a block
                return flushed
            checked, blocked = self._arguments(index, _get(item, "arguments"))
            if blocked:
                return flushed + ([] if opened is None else _message_events(event, index, blocked))
            _put(item, "arguments", checked)
            return flushed + ([opened] if opened is not None else []) + [event]
        if kind == "response.output_item.added":  # usually empty: checked whole; a function call is held
            item = _get(event, "item")
            if item is not None and _get(item, "type") == "function_call":  # held until its arguments pass
                self.opened[_get(event, "output_index", 0)] = event
                return []
            if item is not None:
                self._item(item, _get(event, "output_index", 0))
            return [event]
        noted = []
        if kind in _TERMINAL:
            response = _get(event, "response")
            output = _get(response, "output") if response is not None else None
            self._output(output)
            if note := self.add_note(output):  # its item streamed before the event that lists it
                noted = _message_events(event, len(output) - 1, note)
            _put(event, "carrot_guardrails", self.checks.summary())
        if isinstance(kind, str) and kind.startswith("response.") and _get(event, "response") is not None:
            self.echo(_get(event, "response"))
            self.response = _get(event, "response")
        return noted + [event]

    def add_note(self, output) -> str:
        """The flag note no text carried, added to a response's `output` list as a message item of its own;
        returns it ("" when none, or once a block rule hit)."""
        if not isinstance(output, list) or self.blocked_call is not None or self._text_blocked():
            return ""
        if note := self.unsaid_note():
            output.append(_message_item(len(output), note))
        return note

    def failed(self, status: int, message: str) -> dict:
        """The `response.failed` event for an upstream error mid-answer (the answer so far is not repeated)."""
        response = self.response
        base = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response or {})
        error = {"code": "rate_limit_exceeded" if status == 429 else "server_error", "message": message}
        return {"type": "response.failed", "response": {**base, "status": "failed", "output": [], "error": error}}

    def _flush_texts(self) -> list:
        """Every text still held back, decided now: a call is about to go out, and a block rule in the answer's
        text must be known before it (LiteLLM's bridge sends a text's `.done` after the calls)."""
        return [out for key, f in self.text.items() if f.pending for out in self._emit_text(key, f.finish())]

    def _released(self, key: tuple) -> str | None:
        """What the stream released for `key` ("" for a text that begins after a block rule hit), else None."""
        released = self.released.get(key)
        return "" if released is None and self._text_blocked() else released

    def _no_call(self, index: int) -> bool:
        """No call at `index` goes out: a block rule hit the answer's text, or a call before it (the turn ends
        at a blocked call; the client would run the rest of a plan whose dangerous step was taken out)."""
        return self._text_blocked() or (self.blocked_call is not None and index > self.blocked_call)

    def _text_blocked(self) -> bool:
        """A block rule hit a text of this answer, finished or still streaming (the bridge may send a call's
        events before the text's `.done`)."""
        return bool(self.blocked_text) or any(f.blocked for f in self.text.values())

    def echo(self, response) -> None:
        """The request's `instructions` a Responses body repeats: the client's own, as sent (no pack, no
        context, no egress placeholders)."""
        if isinstance(_get(response, "instructions"), str):
            _put(response, "instructions", self.checks.callers_instructions(_get(response, "instructions")))

    def _arguments(self, index: int, full: str | None) -> tuple[str, str]:
        """A call's arguments checked (`full`, else the deltas streamed at `index`), once per text: the
        terminal event may list calls at other positions than the stream's output indices."""
        text = full if full is not None else "".join(self.arguments.get(index, [])) or "{}"
        if text not in self.checked_arguments:
            self.checked_arguments[text] = self.checks.check_arguments(text)
        if self.checked_arguments[text][1] and (self.blocked_call is None or index < self.blocked_call):
            self.blocked_call = index
        return self.checked_arguments[text]

    def _output(self, output) -> None:
        """A response's `output` list checked in place: only the items that go out (`_item`), no None."""
        if isinstance(output, list):
            output[:] = [new for new in (self._item(item, i) for i, item in enumerate(output)) if new is not None]

    def _item(self, item, index: int):
        """`item` checked in place; a function call a block rule hit comes back as a message item, one after a
        text a block rule hit as None (left out)."""
        if item is None:
            return item
        kind = _get(item, "type")
        if kind == "function_call" and self._no_call(index):  # after a blocked text or call: no call (None)
            return None
        if kind == "function_call":
            checked, blocked = self._arguments(index, _get(item, "arguments"))
            if blocked:
                return _message_item(index, blocked)
            _put(item, "arguments", checked)
        elif kind in ("message", "reasoning"):
            for field in ("content", "summary"):
                for j, part in enumerate(_get(item, field) or []):
                    self._part(part, (_family_of_part(part), index, j))
        return item

    def _part(self, part, key: tuple) -> None:
        """A content / summary part: its text as released through the stream, else checked whole."""
        field = "refusal" if _get(part, "type") == "refusal" else "text"
        if isinstance(_get(part, field), str):
            released = self._released(key)
            if released is None:
                released, blocked = self.checks.check_whole(_get(part, field))
                self.blocked_text += blocked
            _put(part, field, released)
        if _get(part, "logprobs"):
            _put(part, "logprobs", [])


def _message_item(index: int, text: str) -> dict:
    return {"type": "message", "id": f"msg_carrot_{index}", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _message_events(template, index: int, text: str) -> list[dict]:
    """The events that open, fill and close a message item holding `text` at `index` (numbered when `template` is)."""
    item = _message_item(index, text)
    part = item["content"][0]
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    seq = _get(template, "sequence_number")
    events = [{"type": "response.output_item.added", "output_index": index,
               "item": {**item, "content": [], "status": "in_progress"}},
              {"type": "response.content_part.added", **ids, "part": {**part, "text": ""}},
              {"type": "response.output_text.delta", **ids, "delta": text},
              {"type": "response.output_text.done", **ids, "text": text},
              {"type": "response.content_part.done", **ids, "part": part},
              {"type": "response.output_item.done", "output_index": index, "item": item}]
    return [{**e, "sequence_number": seq} for e in events] if seq is not None else events


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
    """Responses API stream events (objects or dicts) → the same events, checked; an upstream that fails
    mid-answer ends it in `response.failed` naming the upstream, with the verdicts."""
    state = _ResponsesState(checks)
    seq = None
    ended = False  # a terminal event went out
    try:
        async for event in stream:
            for out in state.events(event):
                if _get(out, "sequence_number") is not None:  # held, re-cut and added events: numbered as sent
                    seq = _get(out, "sequence_number") if seq is None else seq + 1
                    _put(out, "sequence_number", seq)
                ended = ended or _get(out, "type") in _TERMINAL
                yield out
    except Exception as e:  # noqa: BLE001 - as the bridge's own `response.failed`, with our message and verdicts
        failed = await _failure(checks, e, ended)
        if failed is not None:
            verdicts, status, message = failed
            yield {**state.failed(status, message), "sequence_number": 0 if seq is None else seq + 1,
                   "carrot_guardrails": verdicts}


def check_responses_body(response, checks: OutputChecks):
    """A non-streamed Responses body: output texts and function-call arguments checked; a block rule in a
    text leaves only a message holding the notice (as a chat answer)."""
    state = _ResponsesState(checks)
    output = _get(response, "output")
    state._output(output)
    if isinstance(output, list) and state.blocked_text:
        output[:] = [_message_item(0, notice(state.blocked_text))]
    else:
        state.add_note(output)
    state.echo(response)
    return response
