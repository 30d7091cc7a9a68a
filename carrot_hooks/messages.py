"""Message walking in one place: every stage that reads or rewrites request text goes through here.

A request's text lives in chat `messages` (string content or typed content parts, plus assistant
tool-call arguments) or in a completion's `prompt` and `suffix`. Messages the gateway wrote itself
(prompt pack, retrieved context: `RequestContext.authored`) can be skipped by passing `skip`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator


def content_texts(content) -> list[str]:
    """The text of one message content: a string, or the `text` of each typed part."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return []


def _skipped(message: dict, skip: Collection[str]) -> bool:
    content = message.get("content")
    return isinstance(content, str) and content in skip


def request_texts(data: dict, *, roles: Collection[str] | None = None, skip: Collection[str] = (),
                  tool_arguments: bool = True) -> Iterator[str]:
    """Every text of a request: contents of messages with one of `roles` (all when None), their
    tool-call arguments, and a completion's prompt and suffix."""
    for m in data.get("messages") or ():
        if not isinstance(m, dict) or (roles is not None and m.get("role") not in roles) or _skipped(m, skip):
            continue
        yield from content_texts(m.get("content"))
        if tool_arguments:
            for call in m.get("tool_calls") or ():
                func = call.get("function") if isinstance(call, dict) else None
                if isinstance(func, dict) and isinstance(func.get("arguments"), str):
                    yield func["arguments"]
    prompt = data.get("prompt")
    yield from [prompt] if isinstance(prompt, str) else [p for p in prompt or () if isinstance(p, str)]
    if isinstance(data.get("suffix"), str):  # fill-in-the-middle: the code after the cursor
        yield data["suffix"]


def map_request_texts(data: dict, fn: Callable[[str], str], *, skip: Collection[str] = ()) -> None:
    """Replace every text `request_texts` yields (all roles) by `fn(text)`, in place."""
    for m in data.get("messages") or ():
        if not isinstance(m, dict) or _skipped(m, skip):
            continue
        content = m.get("content")
        if isinstance(content, str):
            m["content"] = fn(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = fn(part["text"])
        for call in m.get("tool_calls") or ():
            func = call.get("function") if isinstance(call, dict) else None
            if isinstance(func, dict) and isinstance(func.get("arguments"), str):
                func["arguments"] = fn(func["arguments"])
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        data["prompt"] = fn(prompt)
    elif isinstance(prompt, list):
        data["prompt"] = [fn(p) if isinstance(p, str) else p for p in prompt]
    if isinstance(data.get("suffix"), str):
        data["suffix"] = fn(data["suffix"])


def prompt_text(data: dict) -> str:
    """All text a request sends, joined (what routing counts tokens of)."""
    return "\n".join(request_texts(data))


def last_user_text(messages: list) -> str:
    """The text of the last user message (what retrieval searches for)."""
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return "\n".join(content_texts(m.get("content")))
    return ""
