"""carrot-review test support: run the bot as a process, make a git checkout, a fake GitHub API,
stand-ins for a broken gateway (one answering 200 with any body, one that never answers).

The fake GitHub REST API serves one pull request on loopback and records reviews. It is strict
where GitHub is: wrong token → 401, review comments on lines outside the diff → 422, reviews
listed in pages of `per_page` with a `Link: rel="next"` header.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from carrot_review.diff import parse_diff

ROOT = Path(__file__).resolve().parents[1]


def run_bot(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """`carrot-review ARGS` in a fresh interpreter; OPENAI_*/GITHUB_* come only from `env`."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GITHUB_"))}
    full.update({"PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})})
    return subprocess.run([sys.executable, "-m", "carrot_review.cli", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout, env=full, check=False)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def make_repo(path: Path, base: dict[str, str], feature: dict[str, str]) -> Path:
    """A git checkout at `path`: branch `main` with the `base` files, `feature` on top with `feature` files."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.invalid")
    git(path, "config", "user.name", "t")
    for files, branch in ((base, None), (feature, "feature")):
        if branch:
            git(path, "checkout", "-q", "-b", branch)
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        git(path, "add", ".")
        git(path, "commit", "-q", "-m", branch or "base")
    return path


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    json: object = None


@dataclass
class FakeGitHub:
    owner: str
    repo: str
    number: int
    head_sha: str
    diff: str
    token: str = "ghp-test-token"
    prefix: str = ""  # e.g. "/api/v3" to act as GitHub Enterprise
    calls: list[Call] = field(default_factory=list)
    reviews: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._commentable = parse_diff(self.diff).commentable() if self.diff.strip() else {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{self.prefix}"

    @property
    def pr(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"

    @property
    def posted(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        call = Call(method, url.path, dict(h.headers.items()), json.loads(body) if body else None)
        self.calls.append(call)
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, {"message": "Bad credentials"})
        pull = f"{self.prefix}/repos/{self.owner}/{self.repo}/pulls/{self.number}"
        if method == "GET" and url.path == pull:
            if "diff" in (h.headers.get("Accept") or ""):
                return self._send(h, 200, self.diff, "text/plain; charset=utf-8")
            return self._send(h, 200, {"number": self.number, "head": {"sha": self.head_sha}})
        if method == "GET" and url.path == pull + "/reviews":
            q = parse_qs(url.query)
            per_page, page = int(q.get("per_page", ["30"])[0]), int(q.get("page", ["1"])[0])
            items = self.reviews[(page - 1) * per_page: page * per_page]
            link = None
            if page * per_page < len(self.reviews):
                link = f'<{self.api_url.removesuffix(self.prefix)}{url.path}?per_page={per_page}&page={page + 1}>; rel="next"'
            return self._send(h, 200, items, link=link)
        if method == "POST" and url.path == pull + "/reviews":
            return self._post_review(h, call.json)
        return self._send(h, 404, {"message": "Not Found"})

    def _post_review(self, h: BaseHTTPRequestHandler, payload: dict) -> None:
        if payload.get("commit_id") != self.head_sha:
            return self._send(h, 422, {"message": "commit_id is not the pull request head"})
        for c in payload.get("comments", []):
            if c.get("side") != "RIGHT" or c.get("line") not in self._commentable.get(c.get("path"), ()):
                return self._send(h, 422, {"message": "Unprocessable Entity",
                                           "errors": [f"Line could not be resolved: {c.get('path')}:{c.get('line')}"]})
        review = {"id": len(self.reviews) + 1, "body": payload.get("body", ""), "commit_id": payload["commit_id"],
                  "state": "COMMENTED", "comments": payload.get("comments", [])}
        self.reviews.append(review)
        return self._send(h, 200, review)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: object, ctype: str = "application/json",
              link: str | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        if link:
            h.send_header("Link", link)
        h.end_headers()
        h.wfile.write(data)


def completion(content: str) -> dict:
    """An OpenAI chat completion whose reply text is `content`."""
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}


class FixedReply:
    """Loopback server answering every GET and POST with the same 200 body: a broken gateway or a
    GitHub Enterprise web root. Records the JSON bodies posted to it."""

    def __init__(self, body: str | dict | list, ctype: str = "application/json") -> None:
        self.requests: list[object] = []
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                fake.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def env(self) -> dict[str, str]:
        """The bot's environment to use this server as its gateway."""
        return {"OPENAI_BASE_URL": f"{self.url}/v1", "OPENAI_API_KEY": "sk-test"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HungGateway:
    """A socket that accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:  # closed
                return

    @property
    def env(self) -> dict[str, str]:
        return {"OPENAI_BASE_URL": f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1", "OPENAI_API_KEY": "sk-test"}

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        self.sock.close()
        for c in self.conns:
            c.close()
