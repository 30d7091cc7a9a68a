"""Tool calls in answers: arguments checked string by string, streamed calls assembled whole first."""

from __future__ import annotations

import json
from collections.abc import Callable

from ..litellm_compat import ChatCompletionDeltaToolCall, Function
from ..messages import map_value
from .answers import Scan, filter_text
from .rules import Finding


def check_arguments(arguments: str, scan: Scan, restore: Callable[[str], str],
                    withheld: Scan) -> tuple[str, list[Finding]]:
    """Each string value of JSON tool-call arguments scanned (the raw text when they are not JSON), then the
    placeholders restored inside each string, keys too, so a value holding a backslash, quote or line break comes
    back escaped and the arguments stay valid JSON; a placeholder left that the risk level does not restore is a
    block finding (`vaults.withheld`): the call is not passed on. One parse for all of it."""
    hits: list[Finding] = []
    texts: list[str] = []  # every string as the client decodes it (`\u003cSECRET_1\u003e` is <SECRET_1>)

    def decoded(text: str) -> str:
        texts.append(restore(text))
        return texts[-1]

    def value(text: str) -> str:
        new, found = filter_text(text, scan)
        hits.extend(found)
        return decoded(new)

    try:
        parsed = json.loads(arguments)
    except ValueError:
        checked = value(arguments)
    else:
        mapped = map_value(parsed, value, keys=decoded)
        checked = arguments if mapped == parsed else json.dumps(mapped, ensure_ascii=False)
    return checked, hits + [f for text in texts for f in withheld(text)]


def collect(acc: dict[int, dict], calls) -> None:
    """Add one stream delta's tool-call fragments to `acc` (index → id, type, name, arguments so far)."""
    for call in calls:
        slot = acc.setdefault(getattr(call, "index", 0) or 0, {"id": None, "type": None, "name": None, "arguments": ""})
        slot["id"] = getattr(call, "id", None) or slot["id"]
        slot["type"] = getattr(call, "type", None) or slot["type"]
        func = getattr(call, "function", None)
        if func is not None:
            slot["name"] = getattr(func, "name", None) or slot["name"]
            slot["arguments"] += getattr(func, "arguments", None) or ""


def finish(delta, acc: dict[int, dict], check: Callable[[str], tuple[str, list[Finding]]]) -> None:
    """Attach the assembled tool calls, their arguments checked and restored by `check`, to the final delta."""
    if not acc:
        return
    calls = []
    for index, slot in sorted(acc.items()):
        args = check(slot["arguments"])[0]
        calls.append(ChatCompletionDeltaToolCall(index=index, id=slot["id"], type=slot["type"] or "function",
                                                 function=Function(name=slot["name"], arguments=args)))
    delta.tool_calls = calls
