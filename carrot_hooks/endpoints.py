"""The agent endpoints besides chat: OpenAI Responses (`/v1/responses`, Codex) and Anthropic Messages
(`/v1/messages`, Claude Code), seen by the gateway as the texts they carry.

LiteLLM bridges both to our chat upstreams; before that, the gateway routes them, puts the prompt pack
into `instructions` / `system`, and the guardrails read and rewrite every caller text through
`map_texts`. Whatever a request carries that these functions cannot see (images, files, server-side
tools, stored conversation state) is refused by `refuse_unchecked` with a 400 naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection

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
    """400 naming the first field whose content the guardrails cannot read."""
    responses = call_type in RESPONSES_CALLS
    for field in _RESPONSES_OPAQUE if responses else _MESSAGES_OPAQUE:
        if data.get(field) not in (None, "", [], {}):
            raise _bad(field, "refers to content stored elsewhere")
    if responses:
        _check_responses_input(data.get("input"))
    else:
        _check_messages(data.get("messages"), data.get("system"))


def refuse_server_tools(data: dict, call_type: str) -> None:
    """400 naming the first tool that is not a plain function the client runs itself (server-side tools,
    Codex's tool namespaces, freeform tools): checked when the tools are sent upstream, not when dropped."""
    responses = call_type in RESPONSES_CALLS
    for i, tool in enumerate(data.get("tools") or []):
        kind = tool.get("type", "function") if isinstance(tool, dict) else None
        if responses and kind != "function" or not responses and kind not in ("custom", "function", None):
            raise _bad(f"tools[{i}]", f"is not a plain function tool ({kind})")


def _check_responses_input(items) -> None:
    if isinstance(items, str):
        return
    if not isinstance(items, list) or not items:
        raise GatewayError(400, "Field 'input' must be a string or a non-empty list of input items", param="input")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise GatewayError(400, f"Field 'input[{i}]' must be an object", param=f"input[{i}]")
        kind = item.get("type", "message")
        if kind not in _RESPONSES_ITEMS:
            raise _bad(f"input[{i}]", f"is a {kind} item")
        content = item.get("content")
        if kind == "message" and isinstance(content, list):
            for j, part in enumerate(content):
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype not in _RESPONSES_PARTS:
                    raise _bad(f"input[{i}].content[{j}]", f"is {ptype or 'not a typed part'}")


def _check_messages(messages, system) -> None:
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "Field 'messages' must be a non-empty list of messages", param="messages")
    places = [("system", system)] + [(f"messages[{i}].content", m.get("content") if isinstance(m, dict) else None)
                                     for i, m in enumerate(messages)]
    for where, content in places:
        for j, block in enumerate(content if isinstance(content, list) else []):
            btype = block.get("type") if isinstance(block, dict) else None
            if btype not in _MESSAGES_BLOCKS:
                raise _bad(f"{where}[{j}]", f"is {btype or 'not a typed block'}")
            if btype == "tool_result":
                for k, inner in enumerate(block.get("content") if isinstance(block.get("content"), list) else []):
                    if not isinstance(inner, dict) or inner.get("type") != "text":
                        raise _bad(f"{where}[{j}].content[{k}]", f"is {inner.get('type') if isinstance(inner, dict) else 'not a block'}")


def _map_json_strings(text: str, fn: Callable[[str], str]) -> str:
    """`fn` over every string inside a JSON document (the raw text when it is not JSON)."""
    try:
        value = json.loads(text)
    except ValueError:
        return fn(text)
    return json.dumps(_map_value(value, fn), ensure_ascii=False)


def _map_value(value, fn: Callable[[str], str]):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_map_value(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_value(v, fn) for k, v in value.items()}
    return value


def _map_parts(content, fn: Callable[[str], str], text_types: frozenset[str] | set[str]):
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in text_types and isinstance(part.get("text"), str):
                part["text"] = fn(part["text"])
    return content


def map_texts(data: dict, call_type: str, fn: Callable[[str], str], authored: Collection[str] = (), *,
              roles: Collection[str] | None = None, tool_arguments: bool = True) -> None:
    """Apply `fn` to every text the caller sent (messages, tool calls and their results, system /
    instructions) whose role is one of `roles` (all when None; tool results count as role `tool`);
    `authored` are texts the gateway wrote itself (pack, retrieved context), left alone."""

    def visit(role: str, args: bool = False) -> Callable[[str], str]:
        if (roles is not None and role not in roles) or (args and not tool_arguments):
            return lambda t: t
        return lambda t: t if t in authored else _map_authored(t, fn, authored)

    if call_type in RESPONSES_CALLS:
        if isinstance(data.get("instructions"), str):
            data["instructions"] = visit("system")(data["instructions"])
        if isinstance(data.get("input"), str):
            data["input"] = visit("user")(data["input"])
            return
        for item in data.get("input") or []:
            kind = item.get("type", "message")
            if kind == "message":
                item["content"] = _map_parts(item.get("content"), visit(str(item.get("role"))), _RESPONSES_PARTS)
            elif kind == "function_call" and isinstance(item.get("arguments"), str):
                item["arguments"] = _map_json_strings(item["arguments"], visit("assistant", args=True))
            elif kind == "function_call_output" and isinstance(item.get("output"), str):
                item["output"] = visit("tool")(item["output"])
        return
    system = data.get("system")
    if isinstance(system, str):
        data["system"] = visit("system")(system)
    else:
        _map_parts(system, visit("system"), {"text"})
    for m in data.get("messages") or []:
        role = str(m.get("role"))
        content = m.get("content")
        if isinstance(content, str):
            m["content"] = visit(role)(content)
            continue
        for block in content or []:
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                block["text"] = visit(role)(block["text"])
            elif btype == "tool_use" and isinstance(block.get("input"), dict):
                block["input"] = _map_value(block["input"], visit(role, args=True))
            elif btype == "tool_result":
                block["content"] = _map_parts(block.get("content"), visit("tool"), {"text"})


PACK_SEPARATOR = "\n\n"


def _map_authored(text: str, fn: Callable[[str], str], authored: Collection[str]) -> str:
    """A system / instructions string the gateway prefixed with its own text: only the caller's part is mapped."""
    for head in authored:
        if text.startswith(head + PACK_SEPARATOR):
            return head + PACK_SEPARATOR + _map_authored(text[len(head) + len(PACK_SEPARATOR):], fn, authored)
    return fn(text)


def texts(data: dict, call_type: str, authored: Collection[str] = (), **which) -> list[str]:
    """Every caller text of the request (the gateway's own `authored` texts left out; `which`: roles,
    tool_arguments as for `map_texts`). Walks a copy: `map_texts` rebuilds what it visits."""
    out: list[str] = []

    def collect(t: str) -> str:
        out.append(t)
        return t

    fields = {k: data[k] for k in ("instructions", "input", "system", "messages") if k in data}
    map_texts(json.loads(json.dumps(fields)), call_type, collect, authored, **which)
    return out


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


def last_user_text(data: dict, call_type: str) -> str:
    """The text of the last user message (what retrieval searches for and auxiliary calls are told by)."""
    if call_type in RESPONSES_CALLS:
        items = data.get("input")
        if isinstance(items, str):
            return items
        messages = [i for i in items or [] if isinstance(i, dict) and i.get("type", "message") == "message"]
    else:
        messages = data.get("messages") or []
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            return "\n".join(p["text"] for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


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
