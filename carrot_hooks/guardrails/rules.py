"""Pattern rules from YAML: keyword prefilter + precompiled regex + value filters.

One mechanism shared by the policy list, the secret detector and the command
detector (gitleaks-style: a rule's regex only runs when one of its keywords is
in the text; one Aho-Corasick pass finds them all, so ~450 secret rules scan
4 KB of code in about a millisecond).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import ahocorasick
from pydantic import BaseModel, ConfigDict, Field, field_validator

RuleAction = Literal["flag", "redact", "block"]


class PatternRule(BaseModel):
    """One YAML rule: `regex` (group `secret`, `secret2`... or the whole match is the finding) gated by `keywords`.

    Matching is tuned for CPython's `re`, which only skips ahead fast when a pattern
    starts with literals: `ignore_case` rules run over the lower-cased text (write their
    literals in lower case), and `word_start` rejects a match that starts inside a word
    (instead of a leading `\\b`, which makes `re` try every position).

    Context checks run only on a match, so they cost nothing on text without one: every
    `context` regex must be found near it (in its line, or within `context_chars` either
    side; the finding then spans the context hits too), a `require_before` regex must be
    found in its line before it, and a match is dropped when an `exclude_before` regex is
    (e.g. the command it is an argument of). Anchor these with `$` to mean "right before".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    regex: str
    keywords: tuple[str, ...] = ()
    action: RuleAction | None = None
    description: str = ""
    min_entropy: float = 0.0
    max_token_ratio: float | None = Field(None, gt=0, description="drop values with this many characters per "
                                          "cl100k token or more: words tokenize long, random keys short")
    ignore_case: bool = False
    word_start: bool = True
    exclude_value: tuple[str, ...] = ()
    exclude_name: tuple[str, ...] = ()
    require_value: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    context_chars: int = Field(0, ge=0, le=4096)
    require_before: tuple[str, ...] = ()
    exclude_before: tuple[str, ...] = ()
    max_width: int | None = Field(None, gt=0, description="the longest match, when every match holds one of the "
                                  "keywords: the regex then runs only within this distance of a keyword found")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _compile(value)
        return value

    @field_validator("exclude_value", "exclude_name", "require_value", "context", "require_before",
                     "exclude_before")
    @classmethod
    def _all_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for v in value:
            _compile(v)
        return value

    @field_validator("keywords")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(k.lower() for k in value)


@functools.lru_cache(maxsize=8192)
def _compile(value: str, flags: int = 0) -> re.Pattern[str]:
    """`value` compiled once per process (a policy reload reuses the compiled rules)."""
    try:
        return re.compile(value, flags)
    except re.error as e:
        raise ValueError(f"regex {value!r} does not compile: {e}") from None


def _any(patterns: tuple[str, ...], flags: int = 0) -> re.Pattern[str] | None:
    return _compile("|".join(f"(?:{p})" for p in patterns), flags) if patterns else None


class ValueFilter(BaseModel):
    """Values that are placeholders by their shape (`<token>`, `${VAR}`, `xxxx`), never by a word they contain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regexes: tuple[str, ...] = ()
    examples: frozenset[str] = Field(frozenset(), description="documented example keys, matched whole")
    max_repeat_ratio: float = Field(0.6, description="a value made mostly of one character is a placeholder")
    followed_by: tuple[str, ...] = Field((), description="a value running straight into one of these is the visible "
                                         "part of a masked one (xoxp-1234-####)")

    @field_validator("regexes", "followed_by")
    @classmethod
    def _all_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for v in value:
            _any((v,))  # each alone, as it is joined with the others (a global (?i) must be scoped: (?i:...))
        return value

    def merged(self, regexes: Iterable[str]) -> ValueFilter:
        """This filter with `regexes` added."""
        return self.model_copy(update={"regexes": (*self.regexes, *regexes)})


@dataclass(frozen=True)
class Finding:
    """A rule hit at `[start, end)`; carries no copy of the matched text."""

    rule_id: str
    start: int
    end: int
    action: RuleAction
    description: str


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


@functools.lru_cache(maxsize=32)
def keyword_automaton(keywords: tuple[str, ...]) -> ahocorasick.Automaton:
    """Aho-Corasick automaton over `keywords`: finds every keyword present in one pass over the text."""
    automaton = ahocorasick.Automaton()
    for k in keywords:
        automaton.add_word(k, k)
    if keywords:
        automaton.make_automaton()
    return automaton


def aligned_lower(text: str) -> str:
    """`text` lower-cased position for position (`İ` lower-cases to two characters: such letters stay)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def token_ratio(value: str) -> float:
    """Characters per cl100k_base token: natural words and identifiers score high, random keys low."""
    return len(value) / max(1, len(_cl100k().encode_ordinary(value)))


@functools.cache
def _cl100k():
    from litellm.litellm_core_utils.default_encoding import (
        encoding,  # the offline copy LiteLLM ships
    )

    return encoding


class RuleSet:
    """Compiled rules scanned over text; findings are non-overlapping, earliest rule wins ties."""

    def __init__(self, rules: Iterable[PatternRule], default_action: RuleAction, value_filter: ValueFilter | None = None):
        self.rules = tuple(rules)
        self.default_action = default_action
        self._keywords = tuple(sorted({k for r in self.rules for k in r.keywords}))
        self._keyword_scan = keyword_automaton(self._keywords)
        self._always = tuple(i for i, r in enumerate(self.rules) if not r.keywords)
        self._by_keyword: dict[str, list[int]] = {}
        for i, r in enumerate(self.rules):
            for k in r.keywords:
                self._by_keyword.setdefault(k, []).append(i)
        self._compiled = [
            (
                r,
                _compile(r.regex),
                _any(r.exclude_value),
                _any(r.exclude_name),
                tuple(_compile(x) for x in r.require_value),
                tuple(_compile(x, re.MULTILINE) for x in r.context),
                tuple(_compile(x, re.MULTILINE) for x in r.require_before),
                _any(r.exclude_before, re.MULTILINE),
            )
            for r in self.rules
        ]
        vf = value_filter or ValueFilter()
        self._shape = _any(vf.regexes)
        self._examples = vf.examples
        self._max_repeat = vf.max_repeat_ratio
        self._mask_after = _any(vf.followed_by)

    def _placeholder(self, value: str) -> bool:
        """A placeholder by shape: a documented example key, a shape regex, or mostly one character."""
        if value in self._examples or (self._shape is not None and self._shape.search(value)):
            return True
        if len(value) >= 8:
            top = Counter(value.lower()).most_common(1)[0][1]
            if top / len(value) > self._max_repeat:
                return True
        return False

    def scan(self, text: str, filter_values: bool = True) -> list[Finding]:
        """All findings in `text`, sorted by position, overlaps resolved to the longest span."""
        if not text:
            return []
        low = aligned_lower(text)
        found: dict[str, list[int]] = {}  # keyword -> where it ends, one pass for all
        for end, k in self._keyword_scan.iter(low) if self._keywords else ():
            found.setdefault(k, []).append(end + 1)
        run = sorted({i for k in found for i in self._by_keyword[k]}.union(self._always))  # in listed order
        hits: list[Finding] = []
        for rule, rx, bad_value, bad_name, required, context, need_before, bad_before in map(self._compiled.__getitem__, run):
            subject = low if rule.ignore_case else text
            for m in _matches(rx, subject, rule, found):
                parts = [m.span(g) for g in _value_groups(rx) if m.start(g) >= 0] or [m.span()]
                span = (min(s for s, _ in parts), max(e for _, e in parts))
                if context or need_before or bad_before is not None:
                    span = _in_context(subject, m, span, context, rule.context_chars, need_before, bad_before)
                    if span is None:
                        continue
                value = text[span[0] : span[1]]
                if filter_values and (
                    any(self._placeholder(text[s:e]) for s, e in parts)
                    or (self._mask_after is not None and self._mask_after.match(text, span[1]))
                    or (rule.min_entropy and shannon_entropy(value) < rule.min_entropy)
                    or (rule.max_token_ratio and token_ratio(value) >= rule.max_token_ratio)
                    or (bad_value is not None and bad_value.search(value))
                    or not all(req.search(value) for req in required)
                    or (bad_name is not None and bad_name.search(_identifier(text, m, "name")))
                ):
                    continue
                for start, end in [span] if len(parts) == 1 else parts:  # each value group on its own: no code between
                    hits.append(Finding(rule.id, start, end, rule.action or self.default_action, rule.description))
        return merge_overlaps(hits)


_LOOKAROUND = 64  # room past a window's edge for a rule's lookahead
LINE_REACH = 1024  # how far along its line a rule's context checks read from a match


def _matches(rx: re.Pattern[str], subject: str, rule: PatternRule, found: dict[str, list[int]]):
    """`rx`'s matches in `subject` that start a word (`word_start`); with `max_width`, searched only in the
    windows around the rule's keywords.

    A match of at most `max_width` characters holding a keyword ending at `e` lies within
    [e - max_width, e + max_width), so no match is missed; a window's end cannot pass for the text's end
    (`$`, `\\b`), since a match ends before it. A match starting inside a word is not taken, and the search goes
    on from its next character (as a leading `\\b` would), not from its end."""
    if rule.max_width is None:
        windows = [[0, len(subject)]]
    else:
        width, windows = rule.max_width, []
        for lo, hi in sorted((max(0, e - width), e + width + _LOOKAROUND) for k in rule.keywords for e in found.get(k, ())):
            if windows and lo <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], hi)
            else:
                windows.append([lo, hi])
    for lo, hi in windows:
        pos = lo
        while (m := rx.search(subject, pos, hi)) is not None:
            start = m.start()
            if rule.word_start and start > 0 and _word(subject[start]) and _word(subject[start - 1]):
                pos = start + 1
                continue
            yield m
            pos = m.end() if m.end() > start else start + 1


def _in_context(
    text: str, m: re.Match[str], span: tuple[int, int], context: tuple[re.Pattern[str], ...], chars: int,
    need_before: tuple[re.Pattern[str], ...], bad_before: re.Pattern[str] | None,
) -> tuple[int, int] | None:
    """`span` widened over its context hits, or None when the match is out of its required context. A rule reads
    its match's line at most LINE_REACH characters either side (a long line would make every match re-read it)."""
    line_start = max(text.rfind("\n", 0, m.start()) + 1, m.start() - LINE_REACH)
    if bad_before is not None and bad_before.search(text, line_start, m.start()):
        return None
    if not all(b.search(text, line_start, m.start()) for b in need_before):
        return None
    if chars:
        lo, hi = max(0, m.start() - chars), min(len(text), m.end() + chars)
    else:
        end = text.find("\n", m.end(), m.end() + LINE_REACH)
        lo, hi = line_start, min(len(text), m.end() + LINE_REACH) if end < 0 else end
    start, stop = span
    for c in context:
        hit = c.search(text, lo, hi)
        if hit is None:
            return None
        start, stop = min(start, hit.start()), max(stop, hit.end())
    return start, stop


@functools.lru_cache(maxsize=8192)
def _value_groups(rx: re.Pattern[str]) -> tuple[str, ...]:
    """Groups that hold the finding's value: `secret`, `secret2`, `secret3`... (one per alternative, or a user name
    and its password): each that took part is a finding, and none is if any part is a placeholder."""
    return tuple(sorted((g for g in rx.groupindex if re.fullmatch(r"secret\d*", g)), key=lambda g: (len(g), g)))


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _identifier(text: str, m: re.Match[str], group: str) -> str:
    """The whole identifier around group `group` (extended left over word chars, dots, dashes)."""
    if group not in m.re.groupindex or m.start(group) < 0:
        return ""
    start = m.start(group)
    while start > 0 and (_word(text[start - 1]) or text[start - 1] in ".-"):
        start -= 1
    return text[start : m.end(group)]


def merge_overlaps(hits: list[Finding]) -> list[Finding]:
    """Keep the longest of overlapping findings (ties: first listed)."""
    hits.sort(key=lambda f: (f.start, -(f.end - f.start)))
    out: list[Finding] = []
    for f in hits:
        if out and f.start < out[-1].end:
            if f.end > out[-1].end:
                prev = out[-1]
                out[-1] = Finding(prev.rule_id, prev.start, f.end, _stronger(prev.action, f.action), prev.description)
            continue
        out.append(f)
    return out


SEVERITY: dict[str, int] = {"flag": 0, "redact": 1, "block": 2}


def _stronger(a: RuleAction, b: RuleAction) -> RuleAction:
    return a if SEVERITY[a] >= SEVERITY[b] else b


def redact(text: str, findings: Iterable[Finding], template: str = "[REDACTED:{rule_id}]") -> str:
    """`text` with every redact/block finding replaced by `template`; flags are left as they are."""
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.action == "flag" or f.start < pos:
            continue
        out.append(text[pos : f.start])
        out.append(template.format(rule_id=f.rule_id))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def explain(kind: str, findings: list[Finding]) -> str:
    """Human-readable summary naming rule ids and counts, never the matched text."""
    ids = Counter(f.rule_id for f in findings)
    listed = ", ".join(f"{rid}" + (f" x{n}" if n > 1 else "") for rid, n in ids.items())
    return f"{kind}: {listed}"
