"""Request fields LiteLLM uses without checking their type: a wrong one was a 500 from inside LiteLLM, or a 502
"upstream could not be reached" when its provider code failed. Checked before routing, as a table: a 400 that
names the field and says what it must be."""

from __future__ import annotations

import math
from collections.abc import Callable

from . import litellm_compat as compat
from .endpoints import MESSAGES_CALLS, RESPONSES_CALLS, named
from .errors import GatewayError
from .messages import EGRESS_FIELDS, EGRESS_FREE_FIELDS

Check = tuple[Callable[[object], bool], str]


def _seconds(v) -> bool:
    """A finite number of seconds above 0 (LiteLLM also takes one as a string)."""
    try:
        seconds = float(v) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else math.nan
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds > 0


def _typed_object(v) -> bool:
    return isinstance(v, dict) and isinstance(v.get("type"), str)


def _objects(v) -> bool:
    return isinstance(v, list) and all(isinstance(t, dict) for t in v)


def _tools(each: Callable[[dict], bool]) -> Callable[[object], bool]:
    """A list of tool objects, each passing `each` (the tools the client runs must be `named`: a nameless one
    reached the model; server tools such as Anthropic's `mcp_toolset` have no name)."""
    return lambda v: _objects(v) and all(each(t) for t in v)


def _anthropic_tool_choice(v) -> bool:
    return _typed_object(v) and v["type"] in ("auto", "any", "none", "tool") and (
        v["type"] != "tool" or named(v))


def _string(v) -> bool:
    return isinstance(v, str)


def _response_format(v) -> bool:
    return _typed_object(v) and (v["type"] != "json_schema" or isinstance(v.get("json_schema"), dict))


_OBJECT: Check = (lambda v: isinstance(v, dict), "must be an object")
_TOOLS = "must be a list of tool objects, each function with a non-empty 'name'"
_OPENAI_TOOL_CHOICE: Check = (lambda v: isinstance(v, str) or _typed_object(v),
                              'must be "auto", "none", "required" or an object with a \'type\'')

EVERY_CALL: dict[str, Check] = {
    "guardrails": (lambda v: isinstance(v, (list, dict)), "must be a list of guardrail names"),
    "timeout": (_seconds, "must be a number of seconds above 0"),
    "max_retries": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                    "must be a whole number, 0 or more"),
    "tags": (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "must be a list of strings"),
    "api_key": (_string, "must be a string"),
    "user": (_string, "must be a string (an end user's id)"),
    "metadata": _OBJECT,
    "extra_body": _OBJECT,
    "stream_options": _OBJECT,
}
BY_CALL: dict[str, dict[str, Check]] = {
    "chat": {"response_format": (_response_format, """must be an object with a 'type' (e.g. {"type": "json_object"}), a json_schema one with an object 'json_schema'"""),
             "suffix": (_string, "must be a string (the text after the cursor)"),
             "tools": (_tools(lambda t: t.get("type") != "function" or named(t.get("function"))), _TOOLS),
             "tool_choice": _OPENAI_TOOL_CHOICE},
    "responses": {"tools": (_tools(lambda t: t.get("type") != "function" or named(t)), _TOOLS),
                  "tool_choice": _OPENAI_TOOL_CHOICE, "text": _OBJECT},
    "messages": {"tools": (_tools(lambda t: t.get("type", "custom") != "custom" or named(t)),
                           "must be a list of tool objects, each custom tool with a non-empty 'name'"),
                 "metadata": (lambda v: isinstance(v, dict) and isinstance(v.get("user_id", ""), str | None),
                              "must be an object whose 'user_id' is a string"),
                 "thinking": (_typed_object, """must be an object with a 'type' (e.g. {"type": "enabled"})"""),
                 "tool_choice": (_anthropic_tool_choice, "must be an object with 'type' auto, any, none or tool"),},
}


def _openai_params() -> frozenset[str]:
    """The chat and completions parameters of OpenAI's API, as its SDK declares them."""
    from openai.types import completion_create_params as text
    from openai.types.chat import completion_create_params as chat

    return frozenset(chat.CompletionCreateParamsBase.__annotations__) | frozenset(
        text.CompletionCreateParamsBase.__annotations__) | {"stream"}


_KNOWN = _openai_params() | compat.LITELLM_PARAMS | frozenset((*EGRESS_FIELDS, *EGRESS_FREE_FIELDS))


def forwarded_extras(data: dict, call_type: str) -> tuple[str, ...]:
    """Top-level fields of a chat or completions request that are neither OpenAI parameters nor LiteLLM's own:
    LiteLLM hands them to the provider as they are (vLLM's `guided_json`, `chat_template_kwargs`, any key a
    client adds), so the guardrails read and egress redacts their strings as caller text. Responses and
    Messages requests have none: LiteLLM's bridge drops keys it does not know."""
    if call_type in RESPONSES_CALLS or call_type in MESSAGES_CALLS:
        return ()
    return tuple(k for k in data if k not in _KNOWN and not k.startswith(("litellm_", "user_api_key")))


def check_fields(data: dict, call_type: str) -> None:
    """400 naming the first field of `EVERY_CALL` or the endpoint's `BY_CALL` entry whose value is malformed
    (absent and null fields are not checked)."""
    endpoint = "responses" if call_type in RESPONSES_CALLS else "messages" if call_type in MESSAGES_CALLS else "chat"
    for field, check in (EVERY_CALL | BY_CALL[endpoint]).items():
        _check(data, field, check)


def check_field(data: dict, field: str, within: str = "") -> None:
    """`check_fields` for one field of `EVERY_CALL`; `within` names the object `data` is (e.g. "metadata")."""
    _check(data, field, EVERY_CALL[field], within)


def _check(data: dict, field: str, check: Check, within: str = "") -> None:
    ok, what = check
    if data.get(field) is not None and not ok(data[field]):
        name = f"{within}.{field}" if within else field
        raise GatewayError(400, f"Field '{name}' {what}", param=name)
