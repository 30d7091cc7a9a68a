"""`carrot-output` (post_call): secrets and dangerous commands in answers and tool calls, placeholder restore.

Whole answers are checked here; streams go through `output_stream.OutputStream`. Both work on
copies: the object LiteLLM caches and logs keeps the upstream's placeholders.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable

from litellm.types.guardrails import GuardrailEventHooks

from .. import litellm_compat as compat
from ..context import RequestContext, get_context, risk_of
from ..messages import TEXT_CALLS, strings_of
from ..metrics import timed_stage
from . import tool_calls
from .answers import Scan, filter_text, flag_note, notice
from .base import CarrotGuardrail
from .engines import shared_engines
from .event_streams import check_anthropic_message, check_responses_body
from .metrics import record_output
from .output_stream import SIDE_TEXTS, OutputStream, reasoning_parts
from .rules import Finding
from .vaults import PII, SECRETS, restorer, withheld


class OutputGuardrail(CarrotGuardrail):
    """Secrets and dangerous commands in answers and tool calls; restores PII placeholders (post_call)."""

    def __init__(self, **kwargs):
        super().__init__(supported_event_hooks=[GuardrailEventHooks.post_call], **kwargs)
        self.engines = shared_engines()

    def _setup(self, data: dict) -> tuple[RequestContext | None, str, Scan, Callable[[str], str], Scan]:
        """The request's context, risk level, scan, placeholder restore, and the check for placeholders in a
        tool call that the level does not restore."""
        ctx = get_context(data)
        level = risk_of(ctx, "carrot-output")
        det = self.engines.detectors()
        risk = det.policy.risk[level]
        restoring = {kind: tuple(name for name, r in det.policy.risk.items() if getattr(r, f"restore_{kind}"))
                     for kind in (PII, SECRETS)}
        restore = restorer(data, tuple(kind for kind, levels in restoring.items() if level in levels))
        return ctx, level, (lambda text: det.output.scan(text, risk)), restore, withheld(data, level, restoring)

    @timed_stage("guardrail_output")
    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):
        """Redact/block/flag in every choice's text and tool-call arguments, then restore placeholders."""
        ctx, level, scan, restore, unrestored = self._setup(data)
        response = response.model_copy(deep=True) if hasattr(response, "model_copy") else response
        if not hasattr(response, "choices"):  # the agent endpoints: a Responses body or an Anthropic message
            stream = self._stream(ctx, level, scan, restore, unrestored)
            responses = hasattr(response, "output") or (isinstance(response, dict) and "output" in response)
            check = check_responses_body if responses else check_anthropic_message
            checked = check(copy.deepcopy(response) if isinstance(response, dict) else response, stream.checks())
            stream.record_once()
            return checked
        applied: Counter[tuple[str, str]] = Counter()
        restored = 0

        def counted(text: str) -> str:
            nonlocal restored
            out = restore(text)
            restored += out != text
            return out

        def check(text: str, arguments: bool = False) -> tuple[str, list[Finding]]:
            if arguments:
                new, hits = tool_calls.check_arguments(text, scan, counted, unrestored)
            else:
                new, hits = filter_text(text, scan)
                new = counted(new)
            applied.update((f.rule_id, f.action) for f in hits)
            return new, hits

        for choice in getattr(response, "choices", None) or []:
            message = getattr(choice, "message", None)
            holder, attr = (message, "content") if message is not None else (choice, "text")
            hits: list[Finding] = []
            text = getattr(holder, attr, None)
            if isinstance(text, str) and text:
                new, found = check(text)
                hits += found
                setattr(holder, attr, new)
            for field in SIDE_TEXTS:  # the model's reasoning and refusal: checked like its answer
                if isinstance(getattr(message, field, None), str):
                    new, found = check(getattr(message, field))
                    hits += found
                    setattr(message, field, new)
            for block in getattr(message, "thinking_blocks", None) or []:
                if isinstance(block, dict) and isinstance(block.get("thinking"), str):
                    block["thinking"], found = check(block["thinking"])
                    hits += found
            for part in reasoning_parts(message):
                part["text"], found = check(part["text"])
                hits += found
            funcs = [getattr(c, "function", None) for c in getattr(message, "tool_calls", None) or []]
            for func in [*funcs, getattr(message, "function_call", None)]:
                if func is not None and isinstance(getattr(func, "arguments", None), str):
                    func.arguments, found = check(func.arguments, arguments=True)
                    hits += found
            if getattr(choice, "logprobs", None) is not None and (hits or scan(_logprob_text(choice.logprobs))):
                choice.logprobs = None  # its tokens spell the answer as the upstream wrote it
            blocked = [f.rule_id for f in hits if f.action == "block"]
            note = flag_note(f.rule_id for f in hits if f.action == "flag")  # the text's and the tool calls'
            if note and not blocked and message is not None:  # never into inserted (FIM) code
                message.content = message.content + note if message.content else note.lstrip()
            if blocked:
                setattr(holder, attr, notice(blocked, hits) if message is not None else "")
                if message is not None:
                    message.tool_calls = None
                    for field in (*SIDE_TEXTS, "thinking_blocks", "reasoning_items", "function_call"):
                        if getattr(message, field, None) is not None:
                            setattr(message, field, None)
                choice.finish_reason = "content_filter"
        record_output(ctx, applied, restored, self.engines.detectors().output.secret_ids)
        return response

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict):
        """Forward the stream through `OutputStream` (holdback per choice, tool calls checked whole)."""
        ctx, level, scan, restore, unrestored = self._setup(request_data)
        if ctx is not None and ctx.call_type in TEXT_CALLS:  # a /v1/completions (FIM) stream
            response = compat.as_text_completion_stream(response, str(request_data.get("model")),
                                                        request_data.get("stream_options"))
        stream = self._stream(ctx, level, scan, restore, unrestored,
                              report=lambda e: compat.post_call_failure(request_data, e, user_api_key_dict))
        async for chunk in stream.run_any(response, request_data):
            yield chunk

    def _stream(self, ctx, level: str, scan, restore, unrestored, report=None) -> OutputStream:
        det = self.engines.detectors()
        risk = det.policy.risk[level]
        return OutputStream(ctx, scan, restore, det.output.hold_keywords(risk), det.policy.stream,
                            det.output.secret_ids, det.output.context_chars(risk), report, unrestored)


def _logprob_text(logprobs) -> str:
    """Every string in a choice's logprobs (tokens and their alternatives), joined."""
    return "".join(strings_of(logprobs.model_dump() if hasattr(logprobs, "model_dump") else logprobs))
