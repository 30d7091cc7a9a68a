"""An ASGI layer in front of LiteLLM's app for what its own routes get wrong for our clients.

- A JSON body sent with another Content-Type (curl `-d` sends `application/x-www-form-urlencoded`,
  which LiteLLM parses as a form, giving "messages must be a non-empty list") is read as JSON; a
  body that is not JSON with such a type gets 415 naming the header.
- `/metrics` is served as `/metrics/` (LiteLLM mounts the exporter, which answers 307 otherwise).
- `/v1/models` (and `/models`) lists only models a client may choose: the fill-in-the-middle twins
  (policy/routing.yaml `fim`) are reached through routing and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable

_JSON_PATHS = ("/v1/", "/chat/", "/completions", "/responses", "/messages", "/embeddings")
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data", b"text/plain", b"")
_MODELS_PATHS = ("/v1/models", "/models")


class HttpEdge:
    """ASGI middleware; `hidden_models()` names the models `/v1/models` leaves out."""

    def __init__(self, app, hidden_models: Callable[[], frozenset[str]]):
        self.app = app
        self.hidden_models = hidden_models

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/metrics":
            scope = {**scope, "path": "/metrics/", "raw_path": b"/metrics/"}
            return await self.app(scope, receive, send)
        if scope.get("method") == "POST" and path.startswith(_JSON_PATHS):
            return await self._json_body(scope, receive, send)
        if scope.get("method") == "GET" and path in _MODELS_PATHS:
            return await self.app(scope, receive, self._filter_models(send))
        return await self.app(scope, receive, send)

    async def _json_body(self, scope, receive, send):
        headers = list(scope.get("headers") or ())
        ctype = next((v for k, v in headers if k == b"content-type"), b"")
        media = ctype.split(b";", 1)[0].strip().lower()
        if media == b"application/json" or media.endswith(b"+json") or media not in _FORM_TYPES:
            return await self.app(scope, receive, send)
        if media == b"multipart/form-data":  # real uploads (audio, files) stay LiteLLM's
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
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
        return await self.app({**scope, "headers": fixed}, _replay([{"type": "http.request", "body": body}], receive), send)

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


def install(app, hidden_models: Callable[[], frozenset[str]]) -> None:
    """Put HttpEdge in front of `app`: into its built middleware stack when the app already runs
    (the gateway callback is loaded during the proxy's start-up), else as a regular middleware."""
    if getattr(app, "middleware_stack", None) is not None:
        if not isinstance(app.middleware_stack, HttpEdge):
            app.middleware_stack = HttpEdge(app.middleware_stack, hidden_models)
    else:
        app.add_middleware(HttpEdge, hidden_models=hidden_models)
