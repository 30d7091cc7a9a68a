"""GitHub REST client (httpx): read a pull request's diff, post one review per head commit."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from carrot_review.errors import InputError
from carrot_review.findings import Finding
from carrot_review.report import comment_body

DEFAULT_API = "https://api.github.com"
MAX_INLINE_COMMENTS = 50  # the rest stay listed in the review body
MAX_BODY_CHARS = 60000  # GitHub rejects review bodies over 65536 characters
MAX_PAGES = 20
API_HINT = "is --github-api the REST base, e.g. https://ghe.example.com/api/v3?"
_PR = re.compile(r"^(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)#(?P<number>\d+)$")


class GitHubError(InputError):
    """The GitHub API refused a request; `status` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PullRef:
    owner: str
    repo: str
    number: int

    @classmethod
    def parse(cls, value: str) -> PullRef:
        m = _PR.match(value.strip())
        if not m:
            raise InputError(f"--github-pr {value!r}: expected OWNER/REPO#NUMBER, e.g. octo/app#12")
        return cls(m["owner"], m["repo"], int(m["number"]))

    @property
    def path(self) -> str:
        return f"/repos/{self.owner}/{self.repo}/pulls/{self.number}"


def marker(head_sha: str) -> str:
    """Hidden tag in the review body that makes re-runs on the same head commit a no-op."""
    return f"<!-- carrot-review head={head_sha} -->"


def _error_detail(resp: httpx.Response) -> str:
    """GitHub's `message` plus its `errors` list (where a 422 says what it could not resolve)."""
    try:
        doc = resp.json()
    except ValueError:
        return resp.text
    if not isinstance(doc, dict):
        return resp.text
    errors = [e if isinstance(e, str) else e.get("message") or str(e) for e in doc.get("errors") or []]
    return "; ".join([str(doc.get("message", "")), *errors]).strip("; ")


def _json(resp: httpx.Response, shape: type) -> dict | list:
    """The reply's JSON document; GitHubError if it is not JSON of `shape` (e.g. a web page)."""
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, shape):
        kind = resp.headers.get("content-type", "no content type")
        raise GitHubError(f"GitHub API {resp.request.method} {resp.request.url}: expected a JSON "
                          f"{shape.__name__}, got {kind}: {resp.text[:80]!r}; {API_HINT}", resp.status_code)
    return doc


class GitHub:
    def __init__(self, token: str, api_url: str = DEFAULT_API, timeout: float = 30.0):
        if not token:
            raise InputError("GITHUB_TOKEN is not set: it is needed to read and review the pull request")
        self.http = httpx.Client(
            base_url=api_url.rstrip("/"), timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "carrot-review"},
        )

    def _request(self, method: str, url: str, **kw) -> httpx.Response:
        try:
            resp = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub API {method} {url}: {exc}") from None
        if resp.is_error:
            detail = _error_detail(resp)
            raise GitHubError(f"GitHub API {method} {url}: HTTP {resp.status_code}: {detail[:500]}", resp.status_code)
        return resp

    def head_sha(self, pr: PullRef) -> str:
        resp = self._request("GET", pr.path)
        head = _json(resp, dict).get("head")
        sha = head.get("sha") if isinstance(head, dict) else None
        if not isinstance(sha, str) or not sha:
            raise GitHubError(f"GitHub API GET {resp.request.url}: no head.sha in the reply; {API_HINT}")
        return sha

    def diff(self, pr: PullRef) -> str:
        return self._request("GET", pr.path, headers={"Accept": "application/vnd.github.diff"}).text

    def reviews(self, pr: PullRef) -> list[dict]:
        out: list[dict] = []
        url: str | None = f"{pr.path}/reviews?per_page=100"
        for _ in range(MAX_PAGES):
            resp = self._request("GET", url)
            out.extend(r for r in _json(resp, list) if isinstance(r, dict))
            url = resp.links.get("next", {}).get("url")
            if not url:
                break
        return out

    def already_reviewed(self, pr: PullRef, head_sha: str) -> bool:
        tag = marker(head_sha)
        return any(tag in (r.get("body") or "") for r in self.reviews(pr))

    def post_review(self, pr: PullRef, head_sha: str, summary: str, findings: list[Finding]) -> tuple[dict, int]:
        """One COMMENT review: summary body plus inline comments on the new side of the diff.
        Returns GitHub's review object and the number of inline comments posted.

        If GitHub cannot place the comments (422: its diff differs from ours), the review is posted
        again without them; every finding is still listed in the body."""
        comments = [{"path": f.file, "line": f.line, "side": "RIGHT", "body": comment_body(f)}
                    for f in findings[:MAX_INLINE_COMMENTS]]
        extra = len(findings) - len(comments)
        note = f"\n_{extra} more finding(s) are listed above but not posted inline._\n" if extra > 0 else ""
        try:
            return self._post(pr, head_sha, summary[:MAX_BODY_CHARS] + note, comments), len(comments)
        except GitHubError as exc:
            if exc.status != 422 or not comments:
                raise
            note = f"\n_Inline comments could not be placed ({exc}); the findings are listed above._\n"
            return self._post(pr, head_sha, summary[:MAX_BODY_CHARS] + note, []), 0

    def _post(self, pr: PullRef, head_sha: str, body: str, comments: list[dict]) -> dict:
        payload = {"commit_id": head_sha, "event": "COMMENT", "body": body + "\n" + marker(head_sha),
                   "comments": comments}
        return _json(self._request("POST", f"{pr.path}/reviews", json=payload), dict)

    def close(self) -> None:
        self.http.close()
