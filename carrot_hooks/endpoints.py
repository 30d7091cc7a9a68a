"""The agent endpoints besides chat: OpenAI Responses (`/v1/responses`, Codex) and Anthropic Messages
(`/v1/messages`, Claude Code), seen by the gateway as the texts they carry.

LiteLLM bridges both to our chat upstreams; before that, the gateway routes them, puts the prompt pack
into `instructions` / `system`, and the guardrails read and rewrite every caller text through
`messages.map_request_texts`. Whatever a request carries that these functions cannot see (images, files, stored
conversation state) is refused by `refuse_unchecked` with a 400 naming it; tools they cannot check (server-side,
freeform) are dropped or refused as the routing policy says (`unchecked_tools`).
"""

from __future__ import annotations

import json

from .errors import GatewayError

RESPONSES_CALLS = frozenset({"responses", "aresponses"})
MESSAGES_CALLS = frozenset({"anthropic_messages", "aanthropic_messages"})
AGENT_CALLS = RESPONSES_CALLS | MESSAGES_CALLS

# Content the guardrails read (text) or that carries no caller text (reasoning is the model's own).
_RESPONSES_ITEMS = {"message", "function_call", "function_call_output", "reasoning"}
_RESPONSES_PARTS = {"input_text", "output_text", "text", "refusal"}
_MESSAGES_BLOCKS = {"text", "tool_use", "tool_result", "thinking", "redacted_thinking"}
# Request fields that hand the model something we never see (server-side state or tools, files).
_RESPONSES_OPAQUE = ("previous_response_id", "conversation", "prompt")
_MESSAGES_OPAQUE = ("mcp_servers", "container")


def _bad(field: str, what: str) -> GatewayError:
    return GatewayError(400, f"Field '{field}' {what}: the gateway cannot check it, so it is not served",
                        param=field, code="unchecked_content")


def refuse_unchecked(data: dict, call_type: str) -> None:
    """400 naming the first field that is malformed or whose content the guardrails cannot read."""
    responses = call_type in RESPONSES_CALLS
    for field in _RESPONSES_OPAQUE if responses else _MESSAGES_OPAQUE:
        if data.get(field) not in (None, "", [], {}):
            raise _bad(field, "refers to content stored elsewhere")
    if responses:
        if data.get("instructions") is not None and not isinstance(data["instructions"], str):
            raise _malformed("instructions", "must be a string")
        _check_responses_input(data.get("input"))
    else:
        _check_messages(data.get("messages"), data.get("system"))


def _malformed(field: str, what: str) -> GatewayError:
    return GatewayError(400, f"Field '{field}' {what}", param=field)


def _checkable_tool(tool, responses: bool) -> bool:
    """A plain function the client runs itself; on Responses also a namespace (Codex's) holding only such."""
    kind = tool.get("type", "function") if isinstance(tool, dict) else None
    if responses and kind == "namespace":
        return isinstance(tool.get("tools"), list) and all(_checkable_tool(t, True) for t in tool["tools"])
    return kind == "function" if responses else kind in ("custom", "function", None)


def unchecked_tools(data: dict, call_type: str, action: str) -> list[str]:
    """The tools the guardrails cannot check (server-side tools, freeform tools) as `tools[i] kind`: with
    `action` drop they are taken out of `data` (a `tool_choice` naming one goes too), with refuse a 400
    names the first. Applies when the tools are sent upstream, not when they are all dropped."""
    responses = call_type in RESPONSES_CALLS
    tools = data.get("tools") or []
    unchecked = [i for i, tool in enumerate(tools) if not _checkable_tool(tool, responses)]
    if not unchecked:
        return []
    kinds = [tools[i].get("type") if isinstance(tools[i], dict) else type(tools[i]).__name__ for i in unchecked]
    if action == "refuse":
        raise _bad(f"tools[{unchecked[0]}]", f"is not a plain function tool ({kinds[0]}; routing policy "
                   "tools.unchecked: refuse)")
    gone = [tools[i] for i in unchecked if isinstance(tools[i], dict)]
    kept = [t for i, t in enumerate(tools) if i not in set(unchecked)]
    if kept:
        data["tools"] = kept
    else:
        data.pop("tools")
    choice = data.get("tool_choice")
    if not kept or isinstance(choice, dict) and (choice.get("type") in {t.get("type") for t in gone} - {"function"}
                                                 or choice.get("name") in {t.get("name") for t in gone} - {None}):
        data.pop("tool_choice", None)
    return [f"tools[{i}] {kind}" for i, kind in zip(unchecked, kinds, strict=True)]


def _check_responses_input(items) -> None:
    if isinstance(items, str):
        return
    if not isinstance(items, list) or not items:
        raise _malformed("input", "must be a string or a non-empty list of input items")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _malformed(where, "must be an object")
        kind = item.get("type", "message")
        if kind not in _RESPONSES_ITEMS:
            raise _bad(where, f"is a {kind} item")
        if kind == "message":
            if item.get("role") not in ("user", "assistant", "system", "developer"):
                raise _malformed(f"{where}.role", "must be one of user, assistant, system, developer")
            if item.get("content") is not None:
                _check_parts(item["content"], f"{where}.content", _RESPONSES_PARTS, "refusal")
        elif kind == "function_call":
            if not named(item):
                raise _malformed(f"{where}.name", "must be a non-empty string")
            if item.get("arguments") is None or (isinstance(item["arguments"], str) and not item["arguments"].strip()):
                item["arguments"] = "{}"  # a call without parameters, as models record it (Codex replays them)
            try:
                json.loads(item["arguments"])
            except (TypeError, ValueError):  # the upstream converters parse them
                raise _malformed(f"{where}.arguments", 'must be a JSON text (e.g. "{}")') from None
        elif kind == "function_call_output":
            _check_parts(item.get("output"), f"{where}.output", _RESPONSES_PARTS, "refusal")


def named(obj) -> bool:
    """A tool or tool call with a name (a nameless one reached the model; a non-string one was a 500)."""
    return isinstance(obj, dict) and isinstance(obj.get("name"), str) and bool(obj["name"].strip())


def _check_parts(content, where: str, types: set[str], *text_fields: str) -> None:
    """Content that is a string or a list of typed parts, each of a type the guardrails read, with its text."""
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _malformed(where, "must be a string or a list of content parts")
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in types:
            raise _bad(f"{where}[{j}]", f"is {kind or 'not a typed part'}")
        field = "thinking" if kind == "thinking" else kind if kind in text_fields else "text"
        if kind in ("text", "input_text", "output_text", "thinking", *text_fields) and not isinstance(
                part.get(field), str):
            raise _malformed(f"{where}[{j}].{field}", "must be a string")


def _check_messages(messages, system) -> None:
    if not isinstance(messages, list) or not messages:
        raise _malformed("messages", "must be a non-empty list of messages")
    if system is not None:
        _check_parts(system, "system", {"text"})
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _malformed(where, "must be an object with a 'role' and 'content'")
        if m.get("role") not in ("user", "assistant", "system"):  # Claude Code sends system turns mid-conversation
            raise _malformed(f"{where}.role", "must be user, assistant or system")
        if not m.get("content") and not (i == len(messages) - 1 and m["role"] == "assistant" and m.get("content") == ""):
            raise _malformed(f"{where}.content", "must be a non-empty string or list of content blocks (only a "
                             "final assistant message, a prefill, may be empty)")
        _check_parts(m["content"], f"{where}.content", _MESSAGES_BLOCKS)
        for j, block in enumerate(m["content"] if isinstance(m["content"], list) else []):
            if block["type"] == "tool_use" and not named(block):
                raise _malformed(f"{where}.content[{j}].name", "must be a non-empty string")
            if block["type"] == "tool_use" and not isinstance(block.get("input"), dict):
                raise _malformed(f"{where}.content[{j}].input", "must be an object")
            if block["type"] == "tool_result" and block.get("content") is not None:
                _check_parts(block["content"], f"{where}.content[{j}].content", {"text"})


PACK_SEPARATOR = "\n\n"


def put_system(data: dict, call_type: str, text: str) -> None:
    """Put the gateway's text (prompt pack, retrieved context) before the client's own system prompt."""
    field = "instructions" if call_type in RESPONSES_CALLS else "system"
    current = data.get(field)
    if current in (None, "", []):
        data[field] = text
    elif isinstance(current, str):
        data[field] = text + PACK_SEPARATOR + current
    else:  # Anthropic system blocks
        data[field] = [{"type": "text", "text": text}, *current]


def has_tools(data: dict) -> bool:
    return bool(data.get("tools"))


def system_texts(data: dict, call_type: str) -> list[str]:
    """The client's own system prompt(s): instructions / system, and system or developer messages."""
    field = data.get("instructions" if call_type in RESPONSES_CALLS else "system")
    out = [field] if isinstance(field, str) else [b["text"] for b in field or [] if isinstance(b, dict)
                                                   and isinstance(b.get("text"), str)]
    items = data.get("input") if call_type in RESPONSES_CALLS else data.get("messages")
    for m in items if isinstance(items, list) else []:
        if isinstance(m, dict) and m.get("role") in ("system", "developer"):
            content = m.get("content")
            out += [content] if isinstance(content, str) else [
                p["text"] for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return out
