"""Person names in prose: spaCy NER on short windows around candidate words, and name-shape checks."""

from __future__ import annotations

import bisect
import functools
import re

import spacy
from presidio_analyzer import RecognizerResult
from spacy.lang.en.stop_words import STOP_WORDS

_WORD = re.compile(r"\S+")
_LETTERS = re.compile(r"[^\W\d_]+")
_MC = re.compile(r"^Ma?c(?=[A-Z])")  # McConnan, MacLeod
_NAME_JOINERS = re.compile(r"['\u2019-]")  # O'Brien, Jean-Luc
_POSSESSIVE = re.compile(r"['\u2019]s$")
_SUFFIX = re.compile(r"(?:II|III|IV|Jr\.?|Sr\.?)")
# Words of context kept on each side of a candidate name: the NER model sees 4 tokens each way.
_NER_CONTEXT_WORDS = 8
# spaCy pipes NER does not need (en_core_web_* NER carries its own tok2vec).
_NOT_FOR_NER = ("tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")
STOP = frozenset(STOP_WORDS | {w.capitalize() for w in STOP_WORDS})


def _is_name_part(part: str, lower_ok: bool = False) -> bool:
    """Maria, Ödön, O, McConnan (or mieszko when `lower_ok`): letters only, one capital at most, first."""
    part = _MC.sub("", part)
    if lower_ok and part.isalpha() and part.islower():
        return True
    return part.isalpha() and part[0].isupper() and (len(part) == 1 or part[1:].islower())


def is_name(value: str, technical: frozenset[str], lower_ok: bool = False) -> bool:
    """True when `value` is shaped like a person's name, not code.

    Every word is a capitalised name part (Maria, O'Brien, Jean-Luc, McConnan), an initial
    (J.), a short lower-case particle between name parts (van, de, ten) or a trailing suffix
    (II, Jr.); no technical term or stop word; identifiers (`self.info`, `getValue`,
    `MAX_SIZE`) never are. `lower_ok` also accepts lower-case words (after "my name is").
    """
    words = value.split()
    if not words or any(w in technical or w.islower() and w in STOP_WORDS for w in words):
        return False
    named = False
    for i, w in enumerate(words):
        if len(w) > 1 and all(_is_name_part(part, lower_ok) for part in _NAME_JOINERS.split(w)):
            named = True
        elif not (
            _is_name_part(w.removesuffix(".")) and len(w.removesuffix(".")) == 1  # initial: J or J.
            or (0 < i < len(words) - 1 and w.isalpha() and w.islower() and len(w) <= 3)  # particle: van, de
            or (i == len(words) - 1 and i > 0 and _SUFFIX.fullmatch(w))
        ):
            return False
    return named


def trim_stop_words(value: str) -> str:
    """`value` without its trailing lower-case stop words ("anthony after her" -> "anthony")."""
    words = value.split(" ")
    while words and words[-1].islower() and words[-1] in STOP_WORDS:
        words.pop()
    return " ".join(words)


def may_name(word: str, technical: frozenset[str]) -> bool:
    """Cheap gate before NER: a capitalised word that is neither a stop word nor a technical term."""
    return any(w[0].isupper() and w not in STOP and w not in technical for w in _LETTERS.findall(word))


@functools.cache
def load_spacy(names: tuple[str, ...]) -> tuple[spacy.language.Language | None, str]:
    """The first installed pipeline of `names` with only its NER loaded (once per process), else (None, "none")."""
    for name in names:
        try:
            return spacy.load(name, exclude=list(_NOT_FOR_NER)), name
        except OSError:
            continue
    return None, "none"


def candidate_windows(prose: str, technical: frozenset[str]) -> list[tuple[int, int]]:
    """Spans of `prose` (within one line) around words that could start a name, merged."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for line in prose.split("\n"):
        words = [m.span() for m in _WORD.finditer(line)]
        last = -1  # index of the last word already in a window
        for i, (s, e) in enumerate(words):
            if not may_name(line[s:e], technical):
                continue
            lo, hi = max(0, i - _NER_CONTEXT_WORDS), min(len(words) - 1, i + _NER_CONTEXT_WORDS)
            if last >= 0 and lo <= last + 1:
                spans[-1] = (spans[-1][0], pos + words[hi][1])
            else:
                spans.append((pos + words[lo][0], pos + words[hi][1]))
            last = hi
        pos += len(line) + 1
    return spans


def ner_names(nlp, prose: str, technical: frozenset[str], labels: dict[str, str], score: float) -> list[RecognizerResult]:
    """spaCy NER over the candidate windows of `prose` (one doc), offsets mapped back to `prose`."""
    spans = candidate_windows(prose, technical)
    if not spans:
        return []
    starts, pieces, pos = [], [], 0
    for s, e in spans:
        starts.append(pos)
        pieces.append(prose[s:e])
        pos += e - s + 1
    doc = nlp("\n".join(pieces))
    out = []
    for ent in doc.ents:
        entity = labels.get(ent.label_)
        if entity is None:
            continue
        # an entity never spans windows or lines ("Jamie Pratt\nTalking-books"), nor a possessive 's
        text = _POSSESSIVE.sub("", ent.text.split("\n", 1)[0].rstrip())
        if not text:
            continue
        i = bisect.bisect_right(starts, ent.start_char) - 1
        start = ent.start_char + spans[i][0] - starts[i]
        out.append(RecognizerResult(entity, start, start + len(text), score))
    return out
