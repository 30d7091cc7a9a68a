"""An ASGI layer in front of LiteLLM's app for what its own routes get wrong for our clients.

- A JSON body sent with another Content-Type (curl `-d` sends `application/x-www-form-urlencoded`,
  which LiteLLM parses as a form, giving "messages must be a non-empty list") is read as JSON; a
  body that is not JSON with such a type gets 415 naming the header.
- A body over the routing policy's `max_body_bytes` gets 413 before it is read (Content-Length) or as
  soon as a chunked upload passes the limit, and before authentication: nothing is buffered or parsed.
  A body that is not UTF-8 gets 400 saying so (LiteLLM reads it as an empty body); one holding NaN, Infinity
  or a number too large for a float (`1e999`; a 500 from inside LiteLLM on /v1/responses, a 502 on
  /v1/completions) gets 400 naming it.
- A gzip body (`Content-Encoding: gzip`, as LiteLLM's own decompression middleware takes it) is decoded here,
  before the checks below, and passed on without the header; the body limit applies to the decoded size as it
  is inflated (a small bomb gets 413 without being inflated whole). A corrupt one is a 400, another encoding a
  415, both naming Content-Encoding.
- LiteLLM's `/vllm/*` pass-through, which reaches the vLLM deployment with no routing and no guardrail, is a 404.
- `/metrics` is served as `/metrics/` (LiteLLM mounts the exporter, which answers 307 otherwise).
- `/v1/models` (and `/models`) lists only models a client may choose: the fill-in-the-middle twins
  (policy/routing.yaml `fim`) are reached through routing and are left out (`/v1/models/<twin>`: 404).
- A non-object `metadata` on `/v1/completions` gets 400 naming it (LiteLLM writes into it before any hook
  runs: a 500); a JSON string holding an object is parsed, as LiteLLM does on chat.
- An error response gets the `x-carrot-*` headers (and `Retry-After`) the gateway chose for the request
  where LiteLLM's error path leaves them out (`/v1/messages`, `/v1/completions`): `ErrorHeaders`.
- A gateway header sent twice (`X-Task-Type: a`, `X-Task-Type: b`) is a 400 naming it, not "the last wins".
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import OrderedDict
from collections.abc import Callable

from .fields import EVERY_CALL
from .headers import GATEWAY_HEADERS

_JSON_PATHS = ("/v1/", "/chat/", "/completions", "/responses", "/messages", "/embeddings", "/engines/", "/openai/")
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data", b"text/plain", b"")
_MODELS_PATHS = ("/v1/models", "/models")
# LiteLLM pass-through routes that reach an upstream without the gateway's hooks (the others run its pre-call
# hook, which refuses them): not served
_UNGUARDED = ("/vllm/",)
_ENCODINGS = {b"": False, b"identity": False, b"gzip": True, b"x-gzip": True}  # value: decoded here
_BIG_EXPONENT = re.compile(rb"\d[eE]\+?\d{3}")  # a number that may overflow a float (1e309 and up)


class ErrorHeaders:
    """Headers the gateway chose for a failed request (`x-carrot-*`, `Retry-After`), by LiteLLM call id, until
    its error response leaves: LiteLLM's /v1/messages and /v1/completions error paths drop what its headers
    hook and the error carry, which its chat path sends. An error sent inside a stream that had started
    leaves no response to take its entry: the oldest entries beyond `size` are dropped."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._by_call: OrderedDict[str, dict[str, str]] = OrderedDict()

    def remember(self, call_id: str, headers: dict[str, str]) -> None:
        self._by_call[call_id] = headers
        while len(self._by_call) > self.size:
            self._by_call.popitem(last=False)

    def take(self, call_id: str) -> dict[str, str] | None:
        return self._by_call.pop(call_id, None)

    def sender(self, send):
        """`send` adding the remembered headers a 4xx/5xx response lacks."""

        async def sending(message):
            if message["type"] == "http.response.start" and message.get("status", 200) >= 400:
                headers = list(message.get("headers") or ())
                call = next((v for k, v in headers if k.lower() == b"x-litellm-call-id"), None)
                extra = self.take(call.decode("latin-1")) if call else None
                if extra:
                    have = {k.lower() for k, _ in headers}
                    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in have]
                    message = {**message, "headers": headers}
            await send(message)

        return sending


error_headers = ErrorHeaders()


class HttpEdge:
    """ASGI middleware; `hidden_models()` names the models `/v1/models` leaves out, `body_limit()` is the
    largest request body in bytes."""

    def __init__(self, app, hidden_models: Callable[[], frozenset[str]], body_limit: Callable[[], int]):
        self.app = app
        self.hidden_models = hidden_models
        self.body_limit = body_limit

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path.startswith(_UNGUARDED):
            return await _error(send, path, 404, f"Route {path} is not served: a pass-through would skip routing and "
                                "the guardrails (use /v1/chat/completions, /v1/completions, /v1/responses or "
                                "/v1/messages)", "path")
        if path == "/metrics":
            scope = {**scope, "path": "/metrics/", "raw_path": b"/metrics/"}
            return await self.app(scope, receive, send)
        if scope.get("method") == "POST" and path.startswith(_JSON_PATHS):
            return await self._post(scope, receive, error_headers.sender(send), path)
        if scope.get("method") == "GET" and path in _MODELS_PATHS:
            return await self.app(scope, receive, self._filter_models(send))
        if scope.get("method") == "GET" and path.startswith(tuple(f"{p}/" for p in _MODELS_PATHS)):
            model = path.split("/models/", 1)[1]
            if model in self.hidden_models():
                return await _error(send, path, 404, f"Model {model} is a fill-in-the-middle deployment reached "
                                    "through routing, not a model to choose", "model")
        return await self.app(scope, receive, send)

    async def _post(self, scope, receive, send, path: str):
        """Repeated gateway headers, the body limit and UTF-8 checked before LiteLLM reads anything."""
        headers = scope.get("headers") or ()
        names = [k.decode("latin-1").lower() for k, _ in headers]
        twice = next((h for h in GATEWAY_HEADERS if names.count(h) > 1), None)
        if twice is not None:
            return await _error(send, path, 400, f"Header {twice} was sent {names.count(twice)} times: send it "
                                "once (a repeated gateway header is ambiguous)", twice)
        limit = self.body_limit()
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > limit:
            return await _too_large(send, path, int(length), limit)
        ctype = next((v for k, v in headers if k == b"content-type"), b"")
        if ctype.split(b";", 1)[0].strip().lower() == b"multipart/form-data":  # uploads stay LiteLLM's
            return await self.app(scope, receive, send)
        encoding = b",".join(v for k, v in headers if k == b"content-encoding").strip().lower()
        if encoding not in _ENCODINGS:
            return await _error(send, path, 415, f"Unsupported Content-Encoding {encoding.decode('latin-1')[:40]}: "
                                "send the body uncompressed or gzip-compressed", "Content-Encoding")
        inflate = _Gunzip() if _ENCODINGS[encoding] else None
        chunks, size, decoded, more = [], 0, 0, True  # read here, up to the limit (chunked uploads have no length)
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            data = message.get("body", b"")
            size += len(data)
            more = message.get("more_body", False)
            if size > limit:
                return await _too_large(send, path, size, limit, more)
            try:  # inflated at most one byte past what the limit leaves: a bomb is never inflated whole
                chunks.append(inflate.feed(data, limit - decoded + 1) if inflate else data)
            except zlib.error as e:
                return await _bad_gzip(send, path, str(e))
            decoded += len(chunks[-1])
            if decoded > limit:
                return await _error(send, path, 413, f"Request body decompresses to more than {limit} bytes "
                                    f"(Content-Encoding: gzip), over the limit of {limit} bytes", "body")
        body = b"".join(chunks)
        if inflate:
            if not inflate.complete:
                return await _bad_gzip(send, path, "the gzip stream ends early")
            headers = [(k, v) for k, v in headers if k not in (b"content-encoding", b"transfer-encoding")]
            scope = {**scope, "headers": _with_length(headers, body)}
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:  # LiteLLM would read it as an empty body ("messages must be ...")
            return await _error(send, path, 400, f"Request body is not valid UTF-8 (byte {e.start}): send the "
                                "JSON encoded as UTF-8", "body")
        if (b"NaN" in body or b"Infinity" in body or _BIG_EXPONENT.search(body)) and (number := _non_finite(body)):
            return await _error(send, path, 400, f"Request body holds {number}, which is not a finite number (a 500 "
                                "from inside LiteLLM on some endpoints): send a finite number", "body")
        if path.endswith("/completions") and not path.endswith("/chat/completions") and b'"metadata"' in body:
            body = _completion_metadata(body)
            if body is None:
                _, what = EVERY_CALL["metadata"]
                return await _error(send, path, 400, f"Field 'metadata' {what}", "metadata")
            scope = {**scope, "headers": _with_length(headers, body)}
        return await self._json_body(scope, body, receive, send)

    async def _json_body(self, scope, body: bytes, receive, send):
        """`body` (read whole by `_post`) to LiteLLM, as JSON when it was sent with a form or text type."""
        headers = list(scope.get("headers") or ())
        ctype = next((v for k, v in headers if k == b"content-type"), b"")
        media = ctype.split(b";", 1)[0].strip().lower()
        replay = _replay([{"type": "http.request", "body": body}], receive)
        if media == b"application/json" or media.endswith(b"+json") or media not in _FORM_TYPES:
            return await self.app(scope, replay, send)
        try:
            is_json = isinstance(json.loads(body), dict) if body.strip() else True
        except ValueError:
            is_json = False
        if not is_json:
            return await _send_json(send, 415, {"error": {
                "message": f"Unsupported Content-Type {ctype.decode(errors='replace') or '(none)'}: the body must be "
                           "a JSON object (send Content-Type: application/json)",
                "type": "unsupported_media_type", "param": "Content-Type", "code": "415"}})
        fixed = [(k, v) for k, v in headers if k != b"content-type"] + [(b"content-type", b"application/json")]
        return await self.app({**scope, "headers": fixed}, replay, send)

    def _filter_models(self, send):
        start: dict = {}
        parts: list[bytes] = []

        async def filtered(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(parts)
            try:
                doc = json.loads(body)
                hidden = self.hidden_models()
                if isinstance(doc, dict) and isinstance(doc.get("data"), list):
                    doc["data"] = [m for m in doc["data"] if not (isinstance(m, dict) and m.get("id") in hidden)]
                    body = json.dumps(doc).encode()
            except ValueError:
                pass
            headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        return filtered


def _non_finite(body: bytes) -> str | None:
    """The first number of a JSON body that is not finite: a NaN / Infinity literal (Python's parser takes them)
    or one too large for a float (`1e999`), else None."""
    found: list[str] = []

    def constant(name: str) -> float:
        found.append(name)
        return 0.0

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            found.append(text[:40])
        return value

    try:
        json.loads(body, parse_constant=constant, parse_float=number)
    except (ValueError, RecursionError):
        return None  # not JSON (or nested past the parser): LiteLLM's own error
    return found[0] if found else None


def _completion_metadata(body: bytes) -> bytes | None:
    """/v1/completions writes into `metadata` before any check (a string or a list was a 500): a JSON string
    holding an object is parsed, as LiteLLM does on chat; None when it is neither an object nor null."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body  # LiteLLM's own error for a body that is not JSON
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if meta is None or isinstance(meta, dict):
        return body
    try:
        parsed = json.loads(meta) if isinstance(meta, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return None
    return json.dumps({**doc, "metadata": parsed}).encode()


def _replay(messages: list[dict], then):
    """A `receive` that gives `messages` first, then the real one (streams listen on it for disconnects)."""
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else await then()

    return receive


async def _send_json(send, status: int, doc: dict) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _with_length(headers, body: bytes) -> list:
    """`headers` with the Content-Length of `body`."""
    return [(k, v) for k, v in headers if k != b"content-length"] + [(b"content-length", str(len(body)).encode())]


class _Gunzip:
    """Inflates a gzip body of one or more members (RFC 1952: members may follow each other, as `cat a.gz b.gz`
    or pigz write them), at most `room` bytes per `feed`; what follows a member must be another member."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(wbits=31)

    def feed(self, data: bytes, room: int) -> bytes:
        parts = [self._z.decompress(data, room)]  # joined once: thousands of tiny members must not copy quadratically
        got = len(parts[0])
        while self._z.eof and self._z.unused_data and got < room:
            rest, self._z = self._z.unused_data, zlib.decompressobj(wbits=31)
            parts.append(self._z.decompress(rest, room - got))
            got += len(parts[-1])
        return b"".join(parts)

    @property
    def complete(self) -> bool:
        return self._z.eof and not self._z.unused_data


async def _bad_gzip(send, path: str, why: str) -> None:
    await _error(send, path, 400, f"Request body is not valid gzip data ({why}): check the Content-Encoding header "
                 "and the compression", "Content-Encoding")


async def _too_large(send, path: str, size: int, limit: int, more: bool = False) -> None:
    at_least = "at least " if more else ""
    await _error(send, path, 413, f"Request body of {at_least}{size} bytes exceeds the limit of {limit} bytes", "body")


async def _error(send, path: str, status: int, message: str, param: str) -> None:
    """An error in the endpoint's own format: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    doc = ({"type": "error", "error": {"type": "invalid_request_error", "message": message}} if "/messages" in path
           else {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": str(status)}})
    await _send_json(send, status, doc)


def install(app, hidden_models: Callable[[], frozenset[str]], body_limit: Callable[[], int]) -> None:
    """Put HttpEdge in front of `app`: into its built middleware stack when the app already runs
    (the gateway callback is loaded during the proxy's start-up), else as a regular middleware."""
    if getattr(app, "middleware_stack", None) is not None:
        if not isinstance(app.middleware_stack, HttpEdge):
            app.middleware_stack = HttpEdge(app.middleware_stack, hidden_models, body_limit)
    else:
        app.add_middleware(HttpEdge, hidden_models=hidden_models, body_limit=body_limit)
