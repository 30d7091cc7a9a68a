"""The output guardrail over a streamed answer: per-choice holdback windows, tool calls checked whole.

Response headers leave before the answer, so the chunk that completes the answer carries the full
verdict summary as `carrot_guardrails` (same format as the `x-carrot-guardrails` header; on the agent
endpoints the event that ends the answer, see `event_streams`).
A FIM stream the upstream ended without a finish reason ends in an error, as chat streams do.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from .. import litellm_compat as compat
from ..context import RequestContext
from ..errors import http_status
from ..upstream import StreamCut
from . import tool_calls
from .answers import Scan, filter_text, flag_note, notice, set_text, text_chunk
from .event_streams import (
    OutputChecks,
    filter_anthropic_stream,
    filter_responses_stream,
)
from .metrics import record_output
from .rules import Finding
from .stream import StreamFilter

log = logging.getLogger("carrot.guardrails")

# chat delta fields besides `content` that carry the model's own text, each held back and checked alike
SIDE_TEXTS = ("reasoning_content", "refusal")


def reasoning_parts(message) -> list[dict]:
    """The summary and content parts with text of a message's or delta's `reasoning_items`."""
    return [p for item in getattr(message, "reasoning_items", None) or () if isinstance(item, dict)
            for field in ("summary", "content") for p in item.get(field) or () if isinstance(p, dict)
            and isinstance(p.get("text"), str)]


def _generated(choice) -> str:
    """The text the model generated in one choice of an upstream chunk: answer, reasoning, tool arguments."""
    delta = getattr(choice, "delta", None)
    if delta is None:
        return getattr(choice, "text", None) or ""
    parts = [getattr(delta, f, None) for f in ("content", *SIDE_TEXTS)]
    parts += [getattr(getattr(c, "function", None), "arguments", None) for c in getattr(delta, "tool_calls", None) or ()]
    return "".join(p for p in parts if isinstance(p, str))


def _own_copy(chunk):
    """A copy of `chunk` whose choices and deltas (what the filter changes) are new objects, the rest shared."""
    out = chunk.model_copy()
    if getattr(chunk, "choices", None):
        out.choices = [c.model_copy(update={"delta": c.delta.model_copy()}) if getattr(c, "delta", None) is not None
                       else c.model_copy() for c in chunk.choices]
    return out


class OutputStream:
    """State of one guarded stream: a holdback filter per choice, tool-call fragments, verdicts."""

    def __init__(self, ctx: RequestContext | None, scan: Scan, restore: Callable[[str], str],
                 keywords: tuple[str, ...], settings, secret_ids: frozenset[str], context: int = 0,
                 report: Callable[[Exception], Awaitable[Exception | None]] | None = None,
                 withheld: Scan = lambda text: []):
        """`withheld`: block findings for placeholders in a tool call that are not restored (`vaults.withheld`)."""
        self.ctx, self.scan, self._restore, self.context, self.report = ctx, scan, restore, context, report
        self.withheld = withheld
        self.keywords, self.settings, self.secret_ids = keywords, settings, secret_ids
        self.filters: dict[int, StreamFilter] = {}
        self.sides: dict[tuple[int, str], StreamFilter] = {}  # (choice, SIDE_TEXTS field) → its filter
        self.tools: dict[int, dict[int, dict]] = {}
        self.tool_hits: list[Finding] = []  # in tool calls, reasoning summaries and texts checked whole
        self.restored = 0
        self.finished: set[int] = set()
        self.recorded = False

    def restore(self, text: str) -> str:
        out = self._restore(text)
        self.restored += out != text
        return out

    def check_call(self, arguments: str) -> tuple[str, list[Finding]]:
        """A complete tool call's arguments checked and restored (`tool_calls.check_arguments`), findings counted."""
        checked, hits = tool_calls.check_arguments(arguments, self.scan, self.restore, self.withheld)
        self.tool_hits += hits
        return checked, hits

    def _new_filter(self) -> StreamFilter:
        return StreamFilter(self.scan, self.keywords, self.settings.holdback_chars, self.settings.max_pending_chars,
                            self.restore, self.context)

    def filter(self, index: int) -> StreamFilter:
        if index not in self.filters:
            self.filters[index] = self._new_filter()
        return self.filters[index]

    def side(self, index: int, field: str) -> StreamFilter:
        if (index, field) not in self.sides:
            self.sides[(index, field)] = self._new_filter()
        return self.sides[(index, field)]

    def record_once(self) -> str:
        """Record the output verdicts (once) and return the summary the final chunk carries."""
        if not self.recorded:
            self.recorded = True
            applied: Counter[tuple[str, str]] = Counter((h.rule_id, h.action) for h in self.tool_hits)
            for f in (*self.filters.values(), *self.sides.values()):
                applied.update(f.applied)
            record_output(self.ctx, applied, self.restored, self.secret_ids)
        return self.ctx.guardrail_summary() if self.ctx is not None else "none"

    def notes(self, *filters: StreamFilter) -> str:
        """The block notice or the flag note for what `filters` and the texts and calls checked whole found."""
        blocked = [r for g in filters for r in g.blocked] + [h.rule_id for h in self.tool_hits if h.action == "block"]
        if blocked:
            return notice(blocked, self.tool_hits)
        return flag_note(r for (r, a) in (*(k for g in filters for k in g.applied),
                                          *((h.rule_id, h.action) for h in self.tool_hits)) if a == "flag")

    async def _choice(self, choice, request_data: dict) -> tuple[str, bool]:
        """Filter one choice of a chunk in place; returns its text and whether the choice must be sent."""
        f = self.filter(choice.index)
        delta = getattr(choice, "delta", None)  # None: a text-completion (FIM) chunk
        if delta is None and choice.finish_reason and compat.finish_was_synthesized(request_data):
            exc = StreamCut(str(request_data.get("model")))
            await compat.report_failure(request_data, exc)  # metrics, the request log's upstream_attempt line
            raise exc
        side = False  # reasoning / refusal text released in this chunk
        if delta is not None:
            if getattr(delta, "tool_calls", None):
                tool_calls.collect(self.tools.setdefault(choice.index, {}), delta.tool_calls)
                delta.tool_calls = None
            if getattr(delta, "function_call", None) is not None:  # the legacy form: not passed on unchecked
                delta.function_call = None
            if getattr(delta, "thinking_blocks", None):  # their text is reasoning_content's, checked there;
                delta.thinking_blocks = [  # signatures and redacted blocks go on (the client sends them back)
                    {**b, "thinking": ""} for b in delta.thinking_blocks if isinstance(b, dict)
                    and (b.get("type") == "redacted_thinking" or b.get("signature"))] or None
            if getattr(delta, "reasoning_items", None):  # the cached/logged stream keeps its own copy
                delta.reasoning_items = copy.deepcopy(delta.reasoning_items)
            for part in reasoning_parts(delta):  # Responses reasoning summaries, whole at the end of a stream
                part["text"], hits = filter_text(part["text"], self.scan)
                self.tool_hits += hits
            for field in SIDE_TEXTS:
                piece = getattr(delta, field, None)
                released = self.side(choice.index, field).feed(piece) if isinstance(piece, str) and piece else ""
                setattr(delta, field, released or None)
                side = side or bool(released)
        choice.logprobs = None  # held-back text no longer lines up with the upstream's token logprobs
        text = getattr(delta, "content", None) if delta is not None else getattr(choice, "text", None)
        if text and delta is not None:  # the answer begins: the reasoning before it is complete, decided now
            side = self._finish_side(delta, choice.index, "reasoning_content") or side
        sides = [g for (i, _), g in self.sides.items() if i == choice.index]
        out = f.feed(text) if text and not any(g.blocked for g in sides) else ""
        if choice.finish_reason or f.blocked or any(g.blocked for g in sides):
            noted = choice.index in self.finished  # a blocked choice's later chunks: its notice went out once
            self.finished.add(choice.index)
            out += f.finish()
            if delta is not None:  # notes go to chat answers, never into inserted code
                for field in SIDE_TEXTS:
                    side = self._finish_side(delta, choice.index, field) or side
                tool_calls.finish(delta, self.tools.pop(choice.index, {}), self.check_call)
                out += "" if noted else self.notes(f, *sides)
            if f.blocked or any(g.blocked for g in sides) or any(h.action == "block" for h in self.tool_hits):
                choice.finish_reason = "content_filter"
                f.blocked = f.blocked or tuple(r for g in sides for r in g.blocked)
                if delta is not None:
                    delta.tool_calls = None
                else:  # inserted code gets nothing more, as a whole FIM answer gets "" (no placeholder in code)
                    out = ""
        set_text(choice, out)
        send = bool(out) or side or bool(choice.finish_reason) or (delta is not None and any(
            getattr(delta, field, None) for field in ("role", "tool_calls", "thinking_blocks", "reasoning_items")))
        return out, send

    def _finish_side(self, delta, index: int, field: str) -> bool:
        """What the filter of choice `index`'s side text `field` still holds, decided now (a block rule there ends
        the answer) and added to the delta's `field`; returns whether text was added."""
        g = self.sides.get((index, field))
        rest = g.finish() if g is not None and g.pending else ""
        if rest:
            setattr(delta, field, (getattr(delta, field, None) or "") + rest)
        return bool(rest)

    def checks(self) -> OutputChecks:
        """The same filters, restore and verdict counting for the agent endpoints' event streams."""
        counter = iter(range(1 << 30))

        def check_arguments(arguments: str) -> tuple[str, str]:
            checked, hits = self.check_call(arguments)
            blocked = [h.rule_id for h in hits if h.action == "block"]
            return checked, notice(blocked, hits) if blocked else ""

        def check_whole(text: str) -> tuple[str, tuple[str, ...]]:
            checked, hits = filter_text(text, self.scan)
            self.tool_hits += hits
            return self.restore(checked), tuple(f.rule_id for f in hits if f.action == "block")

        async def failure(e: Exception) -> tuple[int, str]:
            answered = e
            try:
                answered = (await self.report(e) if self.report is not None else None) or e
            except Exception as report_error:  # noqa: BLE001 - the client still gets the error event
                log.error("reporting a failed stream failed: %s", report_error)
            return http_status(answered), getattr(answered, "message", None) or str(answered)

        ctx = self.ctx
        return OutputChecks(lambda: self.filter(next(counter)), check_arguments, check_whole, self.notes, failure,
                            lambda text: text if ctx is None else ctx.client_instructions, self.record_once)

    async def run_any(self, response: AsyncIterator, request_data: dict) -> AsyncIterator:
        """Any stream, filtered by the format its first chunk has (what the upstream sent decides, never
        the request body): Anthropic SSE, Responses events, or chat / completion chunks."""
        upstream = aiter(response)
        try:
            first = await anext(upstream)
        except StopAsyncIteration:
            return
        stream = _prepend(first, upstream)
        if hasattr(first, "choices"):
            chunks = self.run(stream, request_data)
        elif isinstance(first, dict):  # a parsed event of either kind (its type may be a str enum)
            kind = first.get("type")
            chunks = self.run_events(stream, anthropic=not (isinstance(kind, str) and kind.startswith("response.")))
        else:  # SSE bytes / text: Anthropic Messages; event objects: Responses
            chunks = self.run_events(stream, anthropic=isinstance(first, (bytes, bytearray, str)))
        async for chunk in chunks:
            yield chunk

    async def run_events(self, response: AsyncIterator, anthropic: bool) -> AsyncIterator:
        """An Anthropic Messages (SSE bytes) or Responses (event objects) stream, filtered."""
        events = filter_anthropic_stream if anthropic else filter_responses_stream
        try:
            async for out in events(response, self.checks()):
                yield out
        finally:
            self.record_once()

    async def run(self, response: AsyncIterator, request_data: dict) -> AsyncIterator:
        """Forward `response` chunk by chunk, filtered; stops early once every choice is blocked (then with a
        usage chunk of its own when the request asked for one: the upstream's would come at its end)."""
        last = None
        stopped = False
        stream_id = None
        generated: list[str] | None = [] if compat.client_asked_for_usage(request_data) else None
        try:
            async for upstream_chunk in response:
                chunk = _own_copy(upstream_chunk)  # the cached/logged stream keeps placeholders
                stream_id = stream_id or getattr(chunk, "id", None)
                if stream_id:  # one id per stream, as OpenAI clients expect (LiteLLM's Ollama chunks differ)
                    chunk.id = stream_id
                last = chunk if getattr(chunk, "choices", None) else last  # a template for held text (not a usage chunk)
                choices = getattr(chunk, "choices", None) or []
                send = not choices
                for choice in choices:
                    if generated is not None:
                        generated.append(_generated(choice))
                    send = (await self._choice(choice, request_data))[1] or send
                if choices and self.finished >= self.filters.keys():  # every answer is complete: verdicts final
                    chunk.carrot_guardrails = self.record_once()
                if send:
                    yield chunk
                if self.filters and all(f.blocked for f in self.filters.values()):
                    stopped = True
                    break
            if not stopped and last is not None:
                rest = {i: f.finish() for i, f in self.filters.items() if f.pending}
                sides = {key: g.finish() for key, g in self.sides.items() if g.pending}
                if any(rest.values()) or any(sides.values()):
                    tail = text_chunk(last, rest, sides)
                    tail.carrot_guardrails = self.record_once()
                    yield tail
            if stopped and generated is not None:  # stopped: a choice was filtered, so `last` is a chunk
                yield await asyncio.to_thread(compat.usage_chunk, last, request_data, "".join(generated))
        finally:
            if stopped and hasattr(response, "aclose"):
                await response.aclose()
            self.record_once()


async def _prepend(first, rest: AsyncIterator) -> AsyncIterator:
    """`first`, then the rest of the upstream stream (closed with this one)."""
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        if hasattr(rest, "aclose"):
            await rest.aclose()
