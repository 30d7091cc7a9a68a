"""Message walking in one place: every stage that reads or rewrites request text goes through here.

A request's text lives in chat `messages` (string content or typed content parts, plus assistant
tool-call arguments) or in a completion's `prompt` and `suffix`; on the agent endpoints also in
Anthropic Messages' `system` and content blocks (tool_use input, tool_result content) and in the
Responses API's `instructions` and `input` items (function-call arguments and outputs); the walking of
those two formats is `endpoints.map_texts`. Messages the gateway wrote itself (prompt pack, retrieved
context: `RequestContext.authored`) can be skipped by passing `skip`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterator

from . import endpoints

CHAT_CALLS = frozenset({"completion", "acompletion"})
TEXT_CALLS = frozenset({"text_completion", "atext_completion"})
# the call types the gateway routes and guards; /v1/responses and /v1/messages are bridged to chat
PROMPT_CALLS = CHAT_CALLS | TEXT_CALLS | endpoints.AGENT_CALLS

TEXT_FIELDS = ("messages", "prompt", "suffix", "prediction", "input", "instructions", "system")  # where request text lives


def agent_call_type(data: dict) -> str | None:
    """The agent endpoint a request body belongs to, from its shape (None: chat or completion)."""
    if "input" in data and "messages" not in data:
        return "aresponses"
    if "system" in data or any(isinstance(m, dict) and isinstance(m.get("content"), list) and any(
            isinstance(p, dict) and p.get("type") in ("tool_use", "tool_result") for p in m["content"])
            for m in data.get("messages") or ()):
        return "anthropic_messages"
    return None


def content_texts(content) -> list[str]:
    """The text of one message content: a string, or the `text` of each typed part."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def text_copy(data: dict) -> dict:
    """Deep copies of the request fields that carry text (`TEXT_FIELDS`), to redact without touching the
    originals, which LiteLLM shares between a request's attempts."""
    return {k: copy.deepcopy(data[k]) for k in TEXT_FIELDS if k in data}


def _functions(message: dict) -> list[dict]:
    """The function objects of a message whose `arguments` are text: tool calls and legacy `function_call`."""
    funcs = [c.get("function") for c in message.get("tool_calls") or () if isinstance(c, dict)]
    funcs.append(message.get("function_call"))
    return [f for f in funcs if isinstance(f, dict) and isinstance(f.get("arguments"), str)]


def non_text_parts(data: dict) -> list[str]:
    """`messages[i].content[j]` paths of content parts that carry no text (images, audio, files)."""
    return [f"messages[{i}].content[{j}] ({p.get('type')})"
            for i, m in enumerate(data.get("messages") or ()) if isinstance(m, dict)
            for j, p in enumerate(m.get("content") if isinstance(m.get("content"), list) else ())
            if isinstance(p, dict) and not isinstance(p.get("text"), str)]


def _skipped(message: dict, skip: Collection[str]) -> bool:
    content = message.get("content")
    return isinstance(content, str) and content in skip


def request_texts(data: dict, *, roles: Collection[str] | None = None, skip: Collection[str] = (),
                  tool_arguments: bool = True) -> Iterator[str]:
    """Every text of a request: contents of messages with one of `roles` (all when None), their
    tool-call arguments, and a completion's prompt and suffix."""
    agent = agent_call_type(data)
    if agent is not None:
        yield from endpoints.texts(data, agent, skip, roles=roles, tool_arguments=tool_arguments)
        return
    for m in data.get("messages") or ():
        if not isinstance(m, dict) or (roles is not None and m.get("role") not in roles) or _skipped(m, skip):
            continue
        yield from content_texts(m.get("content"))
        if isinstance(m.get("reasoning_content"), str):
            yield m["reasoning_content"]
        if tool_arguments:
            for func in _functions(m):
                yield func["arguments"]
    prompt = data.get("prompt")
    yield from [prompt] if isinstance(prompt, str) else [p for p in prompt or () if isinstance(p, str)]
    if isinstance(data.get("suffix"), str):  # fill-in-the-middle: the code after the cursor
        yield data["suffix"]
    prediction = data.get("prediction")  # OpenAI predicted outputs: usually the whole file
    if isinstance(prediction, dict):
        yield from content_texts(prediction.get("content"))


CALLER_ROLES = ("user", "assistant", "tool", "function")  # every role but the client's own system prompt


def map_request_texts(data: dict, fn: Callable[[str], str], *, skip: Collection[str] = (),
                      roles: Collection[str] | None = None) -> None:
    """Replace every text `request_texts` yields (of `roles`, all when None) by `fn(text)`, in place."""
    agent = agent_call_type(data)
    if agent is not None:
        endpoints.map_texts(data, agent, fn, skip, roles=roles)
        return
    for m in data.get("messages") or ():
        if not isinstance(m, dict) or _skipped(m, skip) or (roles is not None and m.get("role") not in roles):
            continue
        content = m.get("content")
        if isinstance(content, str):
            m["content"] = fn(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = fn(part["text"])
        if isinstance(m.get("reasoning_content"), str):
            m["reasoning_content"] = fn(m["reasoning_content"])
        for func in _functions(m):
            func["arguments"] = fn(func["arguments"])
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        data["prompt"] = fn(prompt)
    elif isinstance(prompt, list):
        data["prompt"] = [fn(p) if isinstance(p, str) else p for p in prompt]
    if isinstance(data.get("suffix"), str):
        data["suffix"] = fn(data["suffix"])
    prediction = data.get("prediction")
    if isinstance(prediction, dict) and isinstance(prediction.get("content"), str):
        prediction["content"] = fn(prediction["content"])
    elif isinstance(prediction, dict) and isinstance(prediction.get("content"), list):
        for part in prediction["content"]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part["text"] = fn(part["text"])


def prompt_text(data: dict) -> str:
    """All text a request sends, joined (what routing counts tokens of)."""
    return "\n".join(request_texts(data))


def last_user_text(messages: list) -> str:
    """The text of the last user message (what retrieval searches for)."""
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return "\n".join(content_texts(m.get("content")))
    return ""
