"""Holdback window for streamed answers: release text as soon as it cannot be part of a finding.

Each delta is scanned together with the text already released on its line (up to `LINE_CONTEXT`) and at
least the last `holdback` characters (more where a rule reads further around a match).
Text is held back only from the earliest point that could still grow into a finding:
a match that touches the end of what arrived so far, a detector keyword on the
current line (for at most `holdback` characters), a partly arrived keyword, an
unfinished token that could be part of a secret (long, or with digits or key punctuation;
held however long it grows, so a 300-character JWT never leaks past the window),
or a half-written `<PLACEHOLDER_n>`. Everything before it is released (redacted, with
placeholders restored), so the first token is not delayed by a fixed window.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable

from .rules import LINE_REACH, Finding, aligned_lower, keyword_automaton, redact

_OPEN_PLACEHOLDER = re.compile(r"<[A-Z_0-9]{0,40}$")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")
LINE_CONTEXT = LINE_REACH  # rules read a match's line this far: its released part is kept this far back as context
_WHITESPACE = " \n\t\r\x0b\x0c"
_SECRET_CHARS = re.compile(r"\d|[_\-~./+=:|@]")


@functools.lru_cache(maxsize=16)
def _keyword_matchers(keywords: tuple[str, ...]) -> tuple[frozenset[str], int]:
    """The set of every proper keyword prefix and the longest one's length (built once per set)."""
    prefixes = frozenset(k[:i] for k in keywords for i in range(1, len(k)))
    return prefixes, max(map(len, prefixes), default=0)


def _first_keyword(automaton, low: str, start: int) -> int | None:
    """Where the earliest keyword occurrence in `low[start:]` begins (Aho-Corasick: one C pass)."""
    first = None
    for end, keyword in automaton.iter(low, start):
        begin = end - len(keyword) + 1
        first = begin if first is None or begin < first else first
    return first


def _secret_like(token: str) -> bool:
    """Could this unfinished token be the start of a key? Long, or with digits or key punctuation."""
    return len(token) >= 8 or bool(_SECRET_CHARS.search(token))


class StreamFilter:
    """Per-choice filter: `feed(delta)` returns what may be sent now, `finish()` the rest."""

    def __init__(
        self,
        scan: Callable[[str], list[Finding]],
        keywords: tuple[str, ...],
        holdback: int,
        max_pending: int,
        restore: Callable[[str], str] | None = None,
        context: int = 0,
    ):
        """`context`: the most characters a rule reads around a match (its `context_chars`); released text is
        kept that far back, and to the start of its line (up to `LINE_CONTEXT`), so a match completed by a
        later chunk is found as in the whole answer."""
        self.scan, self.holdback, self.max_pending, self.restore = scan, holdback, max_pending, restore
        self.keep = max(holdback, context)
        self._keywords = keyword_automaton(tuple(keywords)) if keywords else None
        self._prefixes, self._longest_prefix = _keyword_matchers(tuple(keywords))
        self.tail = ""  # raw text already released, kept as left context
        self.pending = ""
        self.applied: Counter[tuple[str, str]] = Counter()  # (rule_id, action) of findings acted on
        self._base = 0  # where `tail` begins in the whole answer
        self._counted: dict[tuple[str, int], tuple[str, int]] = {}  # (rule_id, start) -> (action, end), whole answer
        self.blocked: tuple[str, ...] = ()
        self._token_hold: int | None = None  # where `_hold_from` held for a secret-like token ending the text
        self._growing = False  # the last release stopped exactly there: while that token only grows, no scan

    def feed(self, delta: str) -> str:
        """Add `delta`; return the text that is safe to release now ("" while holding)."""
        if self.blocked:
            return ""
        self.pending += delta
        if self._growing and len(self.pending) <= self.max_pending and not any(
                c in delta for c in _WHITESPACE):  # the held token only grew: a scan would release nothing
            return ""
        return self._release(final=len(self.pending) > self.max_pending)

    def finish(self) -> str:
        """Release everything still held (end of stream)."""
        return "" if self.blocked else self._release(final=True)

    def _hold_from(self, window: str, found: list[Finding]) -> int:
        n = len(window)
        limit = n
        end = n - 1 if window.endswith("\n") else n  # a final newline does not finish the last token (held a chunk more)
        token_start = max(window.rfind(c, 0, end) for c in _WHITESPACE) + 1  # rfind: no regex scan
        token = window[token_start:end]
        for f in found:  # a match ending in the unfinished last token may still grow
            if f.end >= n or f.end > token_start:
                limit = min(limit, f.start)
        low = aligned_lower(window)
        line_start = max(low.rfind("\n") + 1, n - self.holdback)
        if self._keywords is not None:
            first = _first_keyword(self._keywords, low, line_start)
            if first is not None:
                limit = min(limit, first)
        for i in range(min(n, self._longest_prefix), 0, -1):  # the longest partly arrived keyword
            if low[n - i:] in self._prefixes:
                limit = min(limit, n - i)
                break
        if token and _secret_like(token):  # however long: a 300-character JWT is held whole
            limit = min(limit, token_start)
            self._token_hold = token_start if end == n else None
        if self.restore is not None:
            lt = window.rfind("<")
            if lt >= 0 and _OPEN_PLACEHOLDER.match(window, lt):
                limit = min(limit, lt)
            for p in _PLACEHOLDER.finditer(window):  # never cut a `<LABEL_n>` in two
                if p.start() < limit < p.end():
                    limit = p.start()
        return limit

    def _context_start(self, window: str, limit: int) -> int:
        """Where the released text kept as context begins: `keep` characters back, or the line's start (at most
        `LINE_CONTEXT` back) when a keyword of a rule that changes text is on the line before that."""
        start = max(0, limit - self.keep)
        far = max(window.rfind("\n", 0, limit) + 1, limit - LINE_CONTEXT)
        if far < start and self._keywords is not None:
            first = _first_keyword(self._keywords, aligned_lower(window[far:limit]), 0)
            if first is not None and far + first < start:
                return far
        return start

    def _count(self, acted: list[Finding], blocks: list[Finding]) -> None:
        """Count each finding once, however many releases find it again; a finding inside a block is the block's,
        as in the whole answer, also when an earlier release had counted it."""
        for f in acted:
            key = (f.rule_id, self._base + f.start)
            if key not in self._counted:
                self._counted[key] = (f.action, self._base + f.end)
                self.applied[(f.rule_id, f.action)] += 1
        if not blocks:
            return
        spans = [(self._base + b.start, self._base + b.end) for b in blocks]
        for (rule_id, start), (action, end) in list(self._counted.items()):
            if action != "block" and any(s < end and start < e for s, e in spans):
                del self._counted[(rule_id, start)]
                self.applied[(rule_id, action)] -= 1
        self.applied = +self.applied  # drop what fell to zero

    def _release(self, final: bool) -> str:
        self._token_hold, self._growing = None, False
        off = len(self.tail)
        window = self.tail + self.pending
        found = [f for f in self.scan(window) if f.end > off]
        limit = len(window) if final else self._hold_from(window, found)
        for f in found:  # never cut a complete finding in two
            if f.start < limit < f.end:
                limit = f.end
        if limit <= off:
            self._growing = limit == self._token_hold
            return ""
        acted = [f for f in found if f.start < limit]
        blocks = [f for f in acted if f.action == "block"]
        if blocks:  # the answer ends where the block begins (or here, when it began in text already sent)
            limit = max(off, blocks[0].start)
            acted = [f for f in acted if f.start < limit and f.action != "block"] + blocks
            self.blocked = tuple(dict.fromkeys(f.rule_id for f in blocks))
        self._count(acted, blocks)
        shifted = [Finding(f.rule_id, max(0, f.start - off), min(limit, f.end) - off, f.action, f.description)
                   for f in acted if max(off, f.start) < min(limit, f.end)]  # only what this release holds of it
        out = redact(window[off:limit], shifted)
        self._growing = limit == self._token_hold and not self.blocked  # nothing else holds earlier
        start = self._context_start(window, limit)
        self.tail, self._base = window[start:limit], self._base + start
        self.pending = "" if self.blocked else window[limit:]
        return self.restore(out) if self.restore is not None else out
