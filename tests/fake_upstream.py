"""The one test double: a loopback model server speaking Ollama's and OpenAI's wire formats.

It records every request it receives and answers from a script of canned replies, so tests
assert on what the gateway actually sent upstream. Tool-calling requests are answered the same way
in both chat formats (OpenAI `/v1/chat/completions`, Ollama `/api/chat`): a reply may call one of
the request's tools, and a request ending in a tool result gets the reply's text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import string
import threading
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Reply:
    """A canned answer, used for the first request whose body contains `match` and names upstream `model`
    (None = any). With `times=0` it answers every such request until withdrawn: a deterministic answer per
    prompt or per model (e.g. a failing or slow candidate model)."""

    content: str = "Hello from the fake upstream."
    match: str | None = None
    model: str | None = None
    tool_calls: list[dict] | None = None  # [{"name", "arguments": a dict or a string sent as it is, optional "id"}]
    call_tool: str | None = None  # call this tool of the request's `tools` (if offered) with `tool_arguments`
    tool_arguments: dict = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0
    cut_after: int | None = None  # stream: drop the connection after this many chunks
    clean_cut: bool = False  # with cut_after: end the stream cleanly (no final chunk) instead of dropping it
    chunk_chars: int = 8
    thinking: str = ""  # the model's reasoning before its answer (Ollama `thinking`, OpenAI `reasoning_content`)
    times: int = 1  # how many requests it answers (0 = unlimited)
    raw: str | None = None  # answer with this body as it is (HTML, empty, malformed JSON) and Content-Type `raw_type`
    raw_type: str = "application/json"
    error_line: str | None = None  # Ollama stream, with cut_after: its {"error": error_line} line there, then the end


def planted_secret(seed: str) -> str:
    """An AWS access key id (an `AKIA…` key the secrets guardrail redacts), the same for the same seed."""
    rng = random.Random(seed)
    return "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))


def _call_id() -> str:
    """A fresh tool-call id, as real models give each call (Claude Code loops on a repeated one)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _tool_names(body: dict) -> list[str]:
    """Names of the tools a request offers (chat and Ollama: {"function": {"name"}}; Responses: {"name"})."""
    return [str((t.get("function") or t).get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]


def _answers_tool_result(body: dict) -> bool:
    turns = body.get("messages") or body.get("input") or []
    last = turns[-1] if isinstance(turns, list) and turns else None
    return isinstance(last, dict) and (last.get("role") == "tool" or last.get("type") == "function_call_output")


def tool_calls_for(reply: Reply, body: dict) -> list[dict]:
    """The calls this reply makes to this request: its own list, or `call_tool` when the request offers
    that tool and is not already answering a tool result (so an agent loop ends with the reply's text)."""
    if reply.tool_calls:
        return reply.tool_calls
    if reply.call_tool and reply.call_tool in _tool_names(body) and not _answers_tool_result(body):
        return [{"name": reply.call_tool, "arguments": reply.tool_arguments}]
    return []


def _json_text(arguments) -> str:
    """Tool call arguments as OpenAI sends them: a dict as JSON text, a string as it is (e.g. not JSON)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


@dataclass
class Recorded:
    path: str
    json: dict
    headers: dict[str, str]
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        return json.dumps(self.json, ensure_ascii=False)

    @property
    def system_messages(self) -> list[str]:
        return [m.get("content") for m in self.json.get("messages", []) if m.get("role") == "system"]


class FakeUpstream:
    """Runs in its own thread and event loop; `url` is its base URL."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        # Ollama answers 400 "... does not support tools" for models whose template has no tools;
        # tests add such model names here (substrings of the upstream model name).
        self.models_without_tools: set[str] = set()
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def withdraw(self, *replies: Reply) -> None:
        """Remove scripted replies that are still waiting (e.g. `times=0` ones at the end of a test)."""
        with self._lock:
            self._script = [r for r in self._script if all(r is not w for w in replies)]

    def find(self, marker: str) -> list[Recorded]:
        """Requests whose body contains `marker`."""
        with self._lock:
            return [r for r in self.requests if marker in r.text]

    def _pick(self, body_text: str, model: str | None) -> Reply:
        with self._lock:
            for i, r in enumerate(self._script):
                if (r.match is None or r.match in body_text) and (r.model is None or r.model == model):
                    if r.times == 1:
                        self._script.pop(i)
                    elif r.times > 1:
                        r.times -= 1
                    return r
        return Reply()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    # --- server ---
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_post("/api/generate", self._ollama_generate)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/completions", self._openai_completions)
        app.router.add_post("/v1/responses", self._openai_responses)  # vLLM and OpenAI serve it natively
        app.router.add_get("/api/tags", self._list)
        app.router.add_get("/v1/models", self._list)
        app.router.add_route("*", "/{path:.*}", self._unserved)  # recorded too: what reached the upstream at all
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    @staticmethod
    async def _list(request: web.Request) -> web.Response:
        return web.json_response({"models": [], "object": "list", "data": []})

    async def _unserved(self, request: web.Request) -> web.Response:
        """Any other route (a provider's token count, files...): recorded with its body, then 404."""
        text = await request.text()
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = {"raw": text}
        with self._lock:
            self.requests.append(Recorded(request.path, body if isinstance(body, dict) else {"raw": body},
                                          dict(request.headers)))
        return web.json_response({"error": {"message": f"fake upstream: no route {request.path}"}}, status=404)

    async def _begin(self, request: web.Request) -> tuple[dict, Reply]:
        body = await request.json()
        rec = Recorded(request.path, body, dict(request.headers))
        with self._lock:
            self.requests.append(rec)
        reply = self._pick(rec.text, body.get("model"))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return body, reply

    @staticmethod
    def _pieces(reply: Reply, text: str | None = None) -> list[str]:
        c = reply.content if text is None else text
        return [c[i:i + reply.chunk_chars] for i in range(0, len(c), reply.chunk_chars)] or [""]

    @staticmethod
    def _canned(reply: Reply) -> web.Response | None:
        """The reply's error status or raw body, when it has one."""
        if reply.status != 200:
            return web.json_response({"error": {"message": f"fake upstream error {reply.status}"}}, status=reply.status)
        return None if reply.raw is None else web.Response(text=reply.raw, content_type=reply.raw_type)

    async def _stream(self, request: web.Request, reply: Reply, lines: list[bytes], ctype: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        await resp.prepare(request)
        for i, line in enumerate(lines):
            if reply.cut_after is not None and i >= reply.cut_after:
                if reply.error_line is not None:
                    await resp.write(json.dumps({"error": reply.error_line}).encode() + b"\n")
                if reply.clean_cut or reply.error_line is not None:
                    await resp.write_eof()
                else:
                    request.transport.close()  # half-cut stream
                return resp
            await resp.write(line)
        await resp.write_eof()
        return resp

    def _refuses_tools(self, body: dict) -> web.Response | None:
        model = str(body.get("model"))
        if body.get("tools") and any(m in model for m in self.models_without_tools):
            return web.json_response({"error": f"registry.ollama.ai/library/{model} does not support tools"},
                                     status=400)
        return None

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._begin(request)
        if (canned := self._canned(reply)) is not None:
            return canned
        refused = self._refuses_tools(body)
        if refused is not None:
            return refused
        calls = tool_calls_for(reply, body)
        model, now = body.get("model"), "2025-01-01T00:00:00Z"
        final = {"model": model, "created_at": now, "message": {"role": "assistant", "content": ""},
                 "done": True, "done_reason": "stop", "prompt_eval_count": 11, "eval_count": 7}
        if not body.get("stream", True):
            msg = {"role": "assistant", "content": reply.content, **({"thinking": reply.thinking} if reply.thinking else {})}
            if calls:
                msg["tool_calls"] = [{"function": {"name": t["name"], "arguments": t["arguments"]}} for t in calls]
            return web.json_response({**final, "message": msg})
        thoughts = self._pieces(reply, reply.thinking) if reply.thinking else []
        lines = [json.dumps({"model": model, "created_at": now, "done": False, "message": {
            "role": "assistant", "content": "", "thinking": p}}).encode() + b"\n" for p in thoughts]
        lines += [json.dumps({"model": model, "created_at": now, "message": {"role": "assistant", "content": p},
                              "done": False}).encode() + b"\n" for p in self._pieces(reply)]
        if calls:
            tc = [{"function": {"name": t["name"], "arguments": t["arguments"]}} for t in calls]
            lines.append(json.dumps({"model": model, "created_at": now, "done": False,
                                     "message": {"role": "assistant", "content": "", "tool_calls": tc}}).encode() + b"\n")
        lines.append(json.dumps(final).encode() + b"\n")
        return await self._stream(request, reply, lines, "application/x-ndjson")

    async def _ollama_generate(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._begin(request)
        if (canned := self._canned(reply)) is not None:
            return canned
        base = {"model": body.get("model"), "created_at": "2025-01-01T00:00:00Z"}
        if not body.get("stream", True):
            return web.json_response({**base, "response": reply.content, "done": True,
                                      "prompt_eval_count": 11, "eval_count": 7})
        lines = [json.dumps({**base, "response": p, "done": False}).encode() + b"\n" for p in self._pieces(reply)]
        lines.append(json.dumps({**base, "response": "", "done": True, "prompt_eval_count": 11,
                                 "eval_count": 7}).encode() + b"\n")
        return await self._stream(request, reply, lines, "application/x-ndjson")

    @staticmethod
    def _sse(obj: dict) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._begin(request)
        if (canned := self._canned(reply)) is not None:
            return canned
        base = {"id": "chatcmpl-fake", "created": 1700000000, "model": body.get("model")}
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        tool_calls = [{"id": t.get("id") or _call_id(), "type": "function",
                       "function": {"name": t["name"], "arguments": _json_text(t["arguments"])}}
                      for t in tool_calls_for(reply, body)]
        if not body.get("stream"):
            msg = {"role": "assistant", "content": reply.content,
                   **({"reasoning_content": reply.thinking} if reply.thinking else {})}
            if tool_calls:
                msg["tool_calls"] = tool_calls
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": msg, "finish_reason": "tool_calls" if tool_calls else "stop"}]})
        chunk = {**base, "object": "chat.completion.chunk"}
        thoughts = self._pieces(reply, reply.thinking) if reply.thinking else []
        lines = [self._sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": p},
                                                  "finish_reason": None}]}) for p in thoughts]
        lines += [self._sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p},
                                                   "finish_reason": None}]}) for p in self._pieces(reply)]
        for i, tc in enumerate(tool_calls):  # as OpenAI streams a call: opened empty, then its arguments in pieces
            opened = {**tc, "index": i, "function": {"name": tc["function"]["name"], "arguments": ""}}
            pieces = [{"index": i, "function": {"arguments": p}} for p in self._pieces(reply, tc["function"]["arguments"])]
            lines += [self._sse({**chunk, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
                      for call in (opened, *pieces)]
        lines.append(self._sse({**chunk, "choices": [{"index": 0, "delta": {},
                                                      "finish_reason": "tool_calls" if tool_calls else "stop"}],
                                "usage": usage}))
        lines.append(b"data: [DONE]\n\n")
        return await self._stream(request, reply, lines, "text/event-stream")

    async def _openai_completions(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._begin(request)
        if (canned := self._canned(reply)) is not None:
            return canned
        base = {"id": "cmpl-fake", "object": "text_completion", "created": 1700000000, "model": body.get("model")}
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if not body.get("stream"):
            return web.json_response({**base, "usage": usage, "choices": [
                {"index": 0, "text": reply.content, "finish_reason": "stop", "logprobs": None}]})
        lines = [self._sse({**base, "choices": [{"index": 0, "text": p, "finish_reason": None, "logprobs": None}]})
                 for p in self._pieces(reply)]
        lines.append(self._sse({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop",
                                                     "logprobs": None}], "usage": usage}))
        lines.append(b"data: [DONE]\n\n")
        return await self._stream(request, reply, lines, "text/event-stream")

    async def _openai_responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API as OpenAI and vLLM speak it: output items (reasoning, message, function calls);
        streamed as named events from response.created to response.completed."""
        body, reply = await self._begin(request)
        if (canned := self._canned(reply)) is not None:
            return canned
        text = {"type": "output_text", "text": reply.content, "annotations": []}
        message = {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant", "content": [text]}
        items = [{"type": "reasoning", "id": "rs_fake", "summary": [{"type": "summary_text", "text": reply.thinking}]}
                 ] if reply.thinking else []
        items += [message] + [{"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}",
                               "call_id": t.get("id") or _call_id(), "name": t["name"],
                               "arguments": _json_text(t["arguments"]), "status": "completed"}
                              for t in tool_calls_for(reply, body)]
        usage = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18,
                 "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
        done = {"id": "resp_fake", "object": "response", "created_at": 1700000000, "status": "completed",
                "model": body.get("model"), "output": items, "usage": usage, "error": None,
                "incomplete_details": None, "instructions": body.get("instructions"), "tools": [],
                "tool_choice": "auto", "parallel_tool_calls": True, "metadata": {}}
        if not body.get("stream"):
            return web.json_response(done)
        seq = itertools.count()

        def event(kind: str, **fields) -> bytes:
            return f"event: {kind}\n".encode() + self._sse({"type": kind, "sequence_number": next(seq), **fields})

        lines = [event("response.created", response={**done, "status": "in_progress", "output": [], "usage": None})]
        for index, item in enumerate(items):
            opened = {"message": {"content": [], "status": "in_progress"}, "reasoning": {"summary": []},
                      "function_call": {"arguments": "", "status": "in_progress"}}.get(item["type"], {})
            lines.append(event("response.output_item.added", output_index=index, item={**item, **opened}))
            if item["type"] == "reasoning":
                part = {"type": "summary_text", "text": reply.thinking}
                ids = {"item_id": item["id"], "output_index": index, "summary_index": 0}
                lines.append(event("response.reasoning_summary_part.added", **ids, part={**part, "text": ""}))
                lines += [event("response.reasoning_summary_text.delta", **ids, delta=p)
                          for p in self._pieces(reply, reply.thinking)]
                lines.append(event("response.reasoning_summary_text.done", **ids, text=reply.thinking))
                lines.append(event("response.reasoning_summary_part.done", **ids, part=part))
            if item["type"] == "function_call":
                lines += [event("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                                delta=p) for p in self._pieces(reply, item["arguments"])]
                lines.append(event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                   arguments=item["arguments"]))
            if item is message:
                lines.append(event("response.content_part.added", item_id="msg_fake", output_index=index,
                                   content_index=0, part={**text, "text": ""}))
                lines += [event("response.output_text.delta", item_id="msg_fake", output_index=index, content_index=0,
                                delta=p) for p in self._pieces(reply) if p]
                lines.append(event("response.output_text.done", item_id="msg_fake", output_index=index,
                                   content_index=0, text=reply.content))
                lines.append(event("response.content_part.done", item_id="msg_fake", output_index=index,
                                   content_index=0, part=text))
            lines.append(event("response.output_item.done", output_index=index, item=item))
        lines.append(event("response.completed", response=done))
        return await self._stream(request, reply, lines, "text/event-stream")

