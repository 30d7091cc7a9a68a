"""Ask the gateway (OpenAI SDK, `X-Task-Type: ci`) to review packed chunks; retry malformed replies once."""

from __future__ import annotations

from dataclasses import dataclass, field

import openai

from carrot_review.findings import Finding, MalformedOutput, parse_model_reply
from carrot_review.packing import Chunk

TASK_HEADERS = {"X-Task-Type": "ci"}
INSTRUCTIONS = (
    "Review the following diff. Each line is `<new-side line number> <+|-|space> <text>`; "
    "cite the new-side line number of the line a finding is about. "
    "Answer with the JSON findings document only."
)
RETRY_NOTE = (
    'That reply could not be parsed. Answer again with only a JSON object of the form '
    '{"findings": [{"file": "...", "line": 1, "severity": "error|warning|note", '
    '"message": "...", "suggestion": "..."}]} and nothing else.'
)

# Stop asking after these: the gateway refuses every request (key, permission, model), or does not
# answer (connection error, timeout) twice in a row: the request and the SDK's one retry (cli: max_retries=1).
FATAL_ERRORS = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError,
                openai.APIConnectionError)


@dataclass
class ChunkResult:
    files: list[str]
    findings: list[Finding] = field(default_factory=list)
    invalid_items: int = 0
    attempts: int = 0
    error: str | None = None  # set when the chunk could not be reviewed
    fatal: bool = False  # one of FATAL_ERRORS: the remaining chunks are not sent
    unusable: bool = False  # the key, the model or the gateway itself is wrong: exit 2 unless --model-optional
    served_by: str | None = None  # the gateway's `x-carrot-model` and `x-carrot-prompt-pack`, if it said


class ModelReviewer:
    """One chat completion per chunk through the gateway; the ci_review prompt pack arrives as system message."""

    def __init__(self, client: openai.OpenAI, model: str, use_cache: bool = True):
        self.client = client
        self.model = model
        # LiteLLM's per-request cache control: skip the gateway's result cache for a fresh review
        self.extra_body = None if use_cache else {"cache": {"no-cache": True}}

    def review(self, chunk: Chunk) -> ChunkResult:
        result = ChunkResult(files=sorted(chunk.files))
        messages = [{"role": "user", "content": f"{INSTRUCTIONS}\n\n{chunk.text}"}]
        for attempt in (1, 2):
            result.attempts = attempt
            try:
                reply = self._complete(messages, result)
            except openai.APIError as exc:
                result.error = f"gateway error: {_describe(exc)}"
                result.fatal = isinstance(exc, FATAL_ERRORS)
                result.unusable = self._unusable(exc)
                return result
            try:
                result.findings, result.invalid_items = parse_model_reply(reply)
                result.error = None
                return result
            except MalformedOutput as exc:
                result.error = f"malformed model output after {attempt} attempt(s): {exc}"
                messages = [*messages, {"role": "assistant", "content": reply or ""},
                            {"role": "user", "content": RETRY_NOTE}]
        return result

    def _unusable(self, exc: openai.APIError) -> bool:
        """A rejected key, an unknown model (404, or a 400 about `model`) or a gateway that cannot be connected to;
        not a slow one (a timeout) nor an upstream failure behind it."""
        if isinstance(exc, openai.APITimeoutError):
            return False
        if isinstance(exc, openai.BadRequestError):  # about the model: `param`, or the gateway's "field 'model'"
            message = str(exc.message)
            return getattr(exc, "param", None) == "model" or "'model'" in message or self.model in message
        return isinstance(exc, FATAL_ERRORS)

    def _complete(self, messages: list[dict], result: ChunkResult) -> str | None:
        """The reply text; APIResponseValidationError if a 200 body is not a chat completion (HTML, a list)."""
        raw = self.client.chat.completions.with_raw_response.create(
            model=self.model, messages=messages, temperature=0, extra_headers=TASK_HEADERS,
            extra_body=self.extra_body,
        )
        said = [raw.headers.get(h) for h in ("x-carrot-model", "x-carrot-prompt-pack")]
        result.served_by = " · ".join(x for x in said if x) or None
        try:
            resp = raw.parse()
            content = resp.choices[0].message.content if resp.choices else None
            if content is None or isinstance(content, str):
                return content
        except (ValueError, AttributeError, TypeError, LookupError):  # not JSON, or JSON of another shape
            pass
        http = raw.http_response
        kind = http.headers.get("content-type", "no content type")
        raise openai.APIResponseValidationError(
            http, http.text, message=f"not a chat completion ({kind}): {http.text[:120]!r}")


def _describe(exc: openai.APIError) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}: {exc.message}" if status else str(exc.message)
