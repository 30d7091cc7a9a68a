"""The LiteLLM guardrails (listed in litellm_config.yaml `guardrails:`), thin wrappers over the engines.

- `PromptPolicyGuardrail` (pre_call): policy regex list + task allowlist → 400/403 naming the rule.
- `PiiGuardrail` (pre_call): code-aware Presidio redaction, escalation, fail-closed 503.
- `OutputGuardrail` (post_call): secrets + dangerous commands in text and tool-call arguments,
  placeholder restore; streams go through a holdback window (`stream.StreamFilter`).

LiteLLM skips hooks inherited from a base class, so every hook is defined on the final class.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Collection

import litellm
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.text_completions.streaming_iterator import TextCompletionStreamWrapper
from litellm.types.guardrails import GuardrailEventHooks

from .. import reqlog
from ..context import RequestContext, Verdict, get_context
from ..errors import GatewayError
from ..metrics import timed_stage
from ..upstream import STREAM_EOF
from .allowlist import allowed_tasks
from .engines import shared_engines
from .metrics import record
from .pii import PiiRedactor, Vault
from .rules import Finding, explain, redact
from .settings import RiskSettings
from .stream import StreamFilter

log = logging.getLogger("carrot.guardrails")

VAULT_KEY = "carrot_pii_vault"
CHAT_AND_TEXT = frozenset({"completion", "acompletion", "text_completion", "atext_completion"})


def _risk(ctx: RequestContext | None) -> str:
    return ctx.risk if ctx is not None else "low"


def _user_texts(data: dict, authored: Collection[str]) -> list[str]:
    """Text the caller wrote: user message contents (not the gateway's own context block) and the prompt."""
    out: list[str] = []
    for m in data.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "user" and not _is_authored(m, authored):
            out.extend(_content_texts(m.get("content")))
    prompt = data.get("prompt")
    out.extend([prompt] if isinstance(prompt, str) else [p for p in prompt or [] if isinstance(p, str)])
    return out


def _is_authored(message: dict, authored: Collection[str]) -> bool:
    content = message.get("content")
    return isinstance(content, str) and content in authored


def _content_texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def _map_request_texts(data: dict, fn: Callable[[str], str], authored: Collection[str]) -> None:
    """Apply `fn` to every text the caller sent: message contents, tool-call arguments, prompt, suffix.

    Messages the gateway wrote (prompt pack, retrieved context) are left out: they are operator content.
    """
    for m in data.get("messages") or []:
        if not isinstance(m, dict) or _is_authored(m, authored):
            continue
        content = m.get("content")
        if isinstance(content, str):
            m["content"] = fn(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = fn(part["text"])
        for call in m.get("tool_calls") or []:
            func = call.get("function") if isinstance(call, dict) else None
            if isinstance(func, dict) and isinstance(func.get("arguments"), str):
                func["arguments"] = fn(func["arguments"])
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        data["prompt"] = fn(prompt)
    elif isinstance(prompt, list):
        data["prompt"] = [fn(p) if isinstance(p, str) else p for p in prompt]
    if isinstance(data.get("suffix"), str):  # fill-in-the-middle: the code after the cursor
        data["suffix"] = fn(data["suffix"])


class PromptPolicyGuardrail(CustomGuardrail):
    """Policy regex list and task allowlist on the request (pre_call)."""

    def __init__(self, **kwargs):
        super().__init__(supported_event_hooks=[GuardrailEventHooks.pre_call], **kwargs)
        self.engines = shared_engines()

    @timed_stage("guardrail_policy")
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """Block (400) on a policy rule with action block, 403 on a task type the caller may not use."""
        if call_type not in CHAT_AND_TEXT:
            return data
        ctx = get_context(data)
        det = self.engines.detectors()
        if ctx is not None:
            tasks, source = allowed_tasks(
                det.policy.task_allowlist, ctx.tenant, user_api_key_dict.metadata, user_api_key_dict.team_metadata
            )
            if ctx.task_type not in tasks:
                record(ctx, Verdict("allowlist", "block", f"task type {ctx.task_type} not allowed", ("task-allowlist",)))
                raise GatewayError(
                    403,
                    f"Task type {ctx.task_type!r} is not allowed for this caller (rule task-allowlist, from {source}); "
                    f"allowed: {', '.join(tasks)}",
                    param="X-Task-Type", code="guardrail_blocked",
                )
        authored = ctx.authored if ctx is not None else ()
        findings = [f for text in _user_texts(data, authored) for f in det.prompt_policy.scan(text)]
        blocks = [f for f in findings if f.action == "block"]
        if blocks:
            record(ctx, Verdict("policy", "block", explain("policy", blocks), tuple(dict.fromkeys(f.rule_id for f in blocks))))
            first = blocks[0]
            raise GatewayError(
                400, f"Request blocked by policy rule {first.rule_id} ({first.description})",
                param="messages", code="guardrail_blocked",
            )
        if findings:
            record(ctx, Verdict("policy", "flag", explain("policy", findings), tuple(dict.fromkeys(f.rule_id for f in findings))))
        else:
            record(ctx, Verdict("policy", "pass", "no policy rule matched"))
        return data


class PiiGuardrail(CustomGuardrail):
    """Code-aware PII redaction of everything sent upstream (pre_call)."""

    def __init__(self, **kwargs):
        super().__init__(supported_event_hooks=[GuardrailEventHooks.pre_call], **kwargs)
        self.engines = shared_engines()
        self.engines.pii()  # load spaCy at start-up and log the mode, not on the first request

    @timed_stage("guardrail_pii")
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """Replace PII with `<LABEL_n>` placeholders; escalate or fail closed per the risk level."""
        if call_type not in CHAT_AND_TEXT:
            return data
        ctx = get_context(data)
        policy = self.engines.watched.get()
        risk: RiskSettings = policy.risk[_risk(ctx)]
        vault = Vault()
        entities: Counter[str] = Counter()
        try:
            redactor = await asyncio.to_thread(self.engines.pii)  # a policy edit may rebuild it: not timed
            redacted = await asyncio.wait_for(
                asyncio.to_thread(_redact_copy, redactor, data, vault, entities, ctx.authored if ctx else ()),
                timeout=policy.pii.timeout_ms / 1000
            )
        except Exception as e:  # noqa: BLE001 - any engine failure: the risk level decides open or closed
            reason = "timed out" if isinstance(e, TimeoutError) else type(e).__name__
            log.error("PII engine failed (%s) for a %s-risk request", reason, _risk(ctx))
            if risk.pii_engine_failure == "closed":
                record(ctx, Verdict("pii", "block", f"PII engine {reason}; failing closed", ("pii-engine-failure",)))
                raise GatewayError(
                    503, f"PII redaction engine unavailable ({reason}); {_risk(ctx)}-risk requests fail closed "
                    "(rule pii-engine-failure)", code="guardrail_unavailable",
                ) from None
            record(ctx, Verdict("pii", "flag", f"PII engine {reason}; low risk passes unredacted", ("pii-engine-failure",)))
            return data
        if not entities:
            record(ctx, Verdict("pii", "pass", "no PII found"))
            return data
        data.update(redacted)
        data.setdefault("metadata", {})[VAULT_KEY] = vault
        summary = ", ".join(f"{e} x{n}" for e, n in entities.items())
        record(ctx, Verdict("pii", "redact", f"replaced with placeholders: {summary}", tuple(sorted(entities))))
        if risk.escalate_on_pii == "review":
            record(ctx, Verdict("pii", "escalate", "PII in this risk level needs human review", ("pii-escalation",)))
            raise GatewayError(
                403, f"Request contains PII ({summary}) at risk level {_risk(ctx)}: it needs human review "
                "(rule pii-escalation)", code="guardrail_review",
            )
        if risk.escalate_on_pii and risk.escalate_on_pii.startswith("reroute:"):
            alias = risk.escalate_on_pii.split(":", 1)[1]
            data["model"] = alias
            if ctx is not None:
                ctx.model_alias = alias
            record(ctx, Verdict("pii", "escalate", f"PII at this risk level rerouted to {alias}", ("pii-escalation",)))
        return data



def _redact_copy(redactor: PiiRedactor, data: dict, vault: Vault, entities: Counter[str],
                 authored: Collection[str]) -> dict:
    """Redacted copies of `messages`/`prompt`/`suffix` (applied only when the whole analysis succeeded)."""
    copy = {k: json.loads(json.dumps(data[k])) for k in ("messages", "prompt", "suffix") if k in data}

    def one(text: str) -> str:
        out, hits = redactor.redact(text, vault)
        entities.update(h.entity for h in hits)
        return out

    _map_request_texts(copy, one, authored)
    return copy


class OutputGuardrail(CustomGuardrail):
    """Secrets and dangerous commands in answers and tool calls; restores PII placeholders (post_call)."""

    def __init__(self, **kwargs):
        super().__init__(supported_event_hooks=[GuardrailEventHooks.post_call], **kwargs)
        self.engines = shared_engines()
        reqlog.install()

    def _setup(self, data: dict) -> tuple[RequestContext | None, Callable[[str], list[Finding]], Callable[[str], str]]:
        ctx = get_context(data)
        det = self.engines.detectors()
        risk = det.policy.risk[_risk(ctx)]
        vault = (data.get("metadata") or {}).get(VAULT_KEY)
        restore = vault.restore if isinstance(vault, Vault) and risk.restore_pii else (lambda t: t)
        return ctx, (lambda text: det.output.scan(text, risk)), restore

    @timed_stage("guardrail_output")
    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):
        """Redact/block/flag in every choice's text and tool-call arguments, then restore placeholders.

        Works on a copy: the object LiteLLM caches and logs keeps the upstream's placeholders.
        """
        ctx, scan, restore = self._setup(data)
        response = response.model_copy(deep=True) if hasattr(response, "model_copy") else response
        applied: Counter[tuple[str, str]] = Counter()
        restored = 0
        for choice in getattr(response, "choices", None) or []:
            message = getattr(choice, "message", None)
            holder, attr = (message, "content") if message is not None else (choice, "text")
            text = getattr(holder, attr, None)
            blocked: list[str] = []
            if isinstance(text, str) and text:
                new, hits = _filter_text(text, scan)
                applied.update((f.rule_id, f.action) for f in hits)
                blocked += [f.rule_id for f in hits if f.action == "block"]
                flags = sorted({f.rule_id for f in hits if f.action == "flag"})
                if flags and message is not None:
                    new += f"\n\n[carrot guardrails flagged: {', '.join(flags)}]"
                final = restore(new)
                restored += final != new
                setattr(holder, attr, final)
            for call in getattr(message, "tool_calls", None) or []:
                func = getattr(call, "function", None)
                if func is not None and isinstance(func.arguments, str):
                    new_args, hits = _filter_arguments(func.arguments, scan)
                    applied.update((f.rule_id, f.action) for f in hits)
                    blocked += [f.rule_id for f in hits if f.action == "block"]
                    final = restore(new_args)
                    restored += final != new_args
                    func.arguments = final
            if blocked:
                setattr(holder, attr, _notice(blocked) if message is not None else "")
                if message is not None:
                    message.tool_calls = None
                choice.finish_reason = "content_filter"
        _record_output(ctx, applied, restored)
        return response

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict):
        """Forward the stream through per-choice holdback windows; tool calls are checked whole.

        Response headers leave before the answer, so the chunk that completes the answer carries the
        full verdict summary as `carrot_guardrails` (same format as the `x-carrot-guardrails` header).
        A FIM stream the upstream ended without a finish reason ends in an error, as chat streams do.
        """
        ctx, scan, restore = self._setup(request_data)
        if "prompt" in request_data:  # a /v1/completions (FIM) stream
            response = _as_text_stream(response, request_data)
        det = self.engines.detectors()
        settings = det.policy.stream
        keywords = det.output.hold_keywords(det.policy.risk[_risk(ctx)])
        filters: dict[int, StreamFilter] = {}
        tools: dict[int, dict[int, dict]] = {}
        tool_hits: Counter[tuple[str, str]] = Counter()
        restored = [0]

        def restore_count(text: str) -> str:
            out = restore(text)
            restored[0] += out != text
            return out

        def filt(index: int) -> StreamFilter:
            if index not in filters:
                filters[index] = StreamFilter(scan, keywords, settings.holdback_chars,
                                              settings.max_pending_chars, restore_count)
            return filters[index]

        finished: set[int] = set()
        recorded = False

        def record_once() -> str:
            """Record the output verdicts (once) and return the summary the final chunk carries."""
            nonlocal recorded
            if not recorded:
                recorded = True
                applied: Counter[tuple[str, str]] = Counter(tool_hits)
                for f in filters.values():
                    applied.update(f.applied)
                _record_output(ctx, applied, restored[0])
            return ctx.guardrail_summary() if ctx is not None else "none"

        last = None
        stopped = False
        try:
            async for upstream_chunk in response:
                chunk = upstream_chunk.model_copy(deep=True)  # the cached/logged stream keeps placeholders
                last = chunk
                choices = getattr(chunk, "choices", None) or []
                send = not choices
                for choice in choices:
                    f = filt(choice.index)
                    delta = getattr(choice, "delta", None)  # None: a text-completion (FIM) chunk
                    if delta is None and choice.finish_reason and _finish_was_synthesized(request_data):
                        await _fail_cut_stream(request_data)
                    if delta is not None and getattr(delta, "tool_calls", None):
                        _collect_tool_calls(tools.setdefault(choice.index, {}), delta.tool_calls)
                        delta.tool_calls = None
                    text = getattr(delta, "content", None) if delta is not None else getattr(choice, "text", None)
                    out = f.feed(text) if text else ""
                    if choice.finish_reason or f.blocked:
                        finished.add(choice.index)
                        out += f.finish()
                        if delta is not None:  # notes go to chat answers, never into inserted code
                            out += _finish_tools(delta, tools.pop(choice.index, {}), scan, restore_count, tool_hits)
                            out += _stream_notes(f, tool_hits)
                        if f.blocked or any(a == "block" for _, a in tool_hits):
                            choice.finish_reason = "content_filter"
                            if delta is not None:
                                delta.tool_calls = None
                    _set_text(choice, out)
                    send = send or bool(out) or bool(choice.finish_reason) or (delta is not None and bool(
                        getattr(delta, "role", None) or getattr(delta, "tool_calls", None)))
                if choices and finished >= filters.keys():  # every answer is complete: verdicts are final
                    chunk.carrot_guardrails = record_once()
                if send:
                    yield chunk
                if filters and all(f.blocked for f in filters.values()):
                    stopped = True
                    break
            if not stopped and last is not None:
                rest = {i: f.finish() for i, f in filters.items() if f.pending}
                if any(rest.values()):
                    tail = _text_chunk(last, rest)
                    tail.carrot_guardrails = record_once()
                    yield tail
        finally:
            if stopped and hasattr(response, "aclose"):
                await response.aclose()
            record_once()


async def _as_text_stream(response, request_data: dict):
    """A FIM stream's chat-style chunks as text-completion chunks: LiteLLM 1.110 replays a cached FIM
    stream as chat chunks, whose `delta.content` a /v1/completions client never reads."""
    converter = TextCompletionStreamWrapper(completion_stream=None, model=str(request_data.get("model")),
                                            stream_options=request_data.get("stream_options"))
    async for chunk in response:
        chat_style = any(getattr(c, "delta", None) is not None for c in getattr(chunk, "choices", None) or ())
        yield converter.convert_to_text_completion_object(chunk) if chat_style else chunk


def _finish_was_synthesized(request_data: dict) -> bool:
    """Did LiteLLM make up this finish because the upstream's stream ended without one?

    LiteLLM 1.110 raises for that on chat streams only; a text-completion (FIM) stream gets a "stop".
    Its stream wrapper is a local of the provider's streaming generator, which the call's logging
    object holds as `original_response` (a cache hit holds a dict: nothing to check, it was complete).
    """
    details = getattr(request_data.get("litellm_logging_obj"), "model_call_details", None) or {}
    frame = getattr(details.get("original_response"), "ag_frame", None)
    local_values = frame.f_locals.values() if frame is not None else ()
    return any(hasattr(v, "received_finish_reason") and v.received_finish_reason is None for v in local_values)


async def _fail_cut_stream(request_data: dict) -> None:
    """Log and raise what LiteLLM raises for a chat stream cut cleanly (the gateway maps it to 502 upstream_cut)."""
    exc = litellm.APIConnectionError(message=STREAM_EOF, llm_provider="text-completion-openai",
                                     model=str(request_data.get("model")))
    logging_obj = request_data.get("litellm_logging_obj")
    if logging_obj is not None:  # failure callbacks (metrics, the request log's upstream_attempt line)
        await logging_obj.async_failure_handler(exc, "")
    raise exc


def _filter_text(text: str, scan: Callable[[str], list[Finding]]) -> tuple[str, list[Finding]]:
    hits = scan(text)
    return (redact(text, hits) if hits else text), hits


def _filter_arguments(arguments: str, scan: Callable[[str], list[Finding]]) -> tuple[str, list[Finding]]:
    """Scan each string inside JSON tool-call arguments (raw text when it is not JSON)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return _filter_text(arguments, scan)
    hits: list[Finding] = []

    def walk(value):
        if isinstance(value, str):
            new, found = _filter_text(value, scan)
            hits.extend(found)
            return new
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    cleaned = walk(parsed)
    return (json.dumps(cleaned, ensure_ascii=False) if hits else arguments), hits


def _collect_tool_calls(acc: dict[int, dict], calls) -> None:
    for call in calls:
        slot = acc.setdefault(getattr(call, "index", 0) or 0, {"id": None, "type": None, "name": None, "arguments": ""})
        slot["id"] = getattr(call, "id", None) or slot["id"]
        slot["type"] = getattr(call, "type", None) or slot["type"]
        func = getattr(call, "function", None)
        if func is not None:
            slot["name"] = getattr(func, "name", None) or slot["name"]
            slot["arguments"] += getattr(func, "arguments", None) or ""


def _finish_tools(delta, acc: dict[int, dict], scan, restore, hits: Counter) -> str:
    """Attach the checked, restored tool calls to the final delta; return nothing (text stays as is)."""
    from litellm.types.utils import ChatCompletionDeltaToolCall, Function

    if not acc:
        return ""
    calls = []
    for index, slot in sorted(acc.items()):
        args, found = _filter_arguments(slot["arguments"], scan)
        hits.update((f.rule_id, f.action) for f in found)
        calls.append(ChatCompletionDeltaToolCall(index=index, id=slot["id"], type=slot["type"] or "function",
                                                 function=Function(name=slot["name"], arguments=restore(args))))
    delta.tool_calls = calls
    return ""


def _stream_notes(f: StreamFilter, tool_hits: Counter) -> str:
    blocked = list(f.blocked) + [r for (r, a) in tool_hits if a == "block"]
    if blocked:
        return _notice(blocked)
    flags = sorted({r for (r, a) in (*f.applied, *tool_hits) if a == "flag"})
    return f"\n\n[carrot guardrails flagged: {', '.join(flags)}]" if flags else ""


def _notice(rule_ids: list[str]) -> str:
    return f"[blocked by carrot guardrails: {', '.join(dict.fromkeys(rule_ids))}]"


def _set_text(choice, text: str) -> None:
    if getattr(choice, "delta", None) is not None:
        choice.delta.content = text or None
    else:
        choice.text = text


def _text_chunk(template, texts: dict[int, str]):
    """A final chunk shaped like `template` carrying text still held when the upstream ended."""
    chunk = template.model_copy(deep=True)
    chunk.choices = [c for c in chunk.choices if texts.get(c.index)]
    for c in chunk.choices:
        _set_text(c, texts[c.index])
    return chunk


def _record_output(ctx: RequestContext | None, applied: Counter, restored: int) -> None:
    by_kind: dict[tuple[str, str], list[str]] = {}
    secret_ids = {r.id for r in shared_engines().watched.get().secrets.rules}
    for (rule_id, action), n in applied.items():
        kind = "secrets" if rule_id in secret_ids else "commands"
        by_kind.setdefault((kind, action), []).extend([rule_id] * n)
    for (kind, action), ids in sorted(by_kind.items()):
        listed = ", ".join(f"{r} x{c}" if c > 1 else r for r, c in Counter(ids).items())
        record(ctx, Verdict(kind, action, f"{kind}: {listed}", tuple(dict.fromkeys(ids))))
    if restored:
        record(ctx, Verdict("pii", "restore", "placeholders restored for the client"))
    if not applied:
        record(ctx, Verdict("output", "pass", "no secret or dangerous command found"))
