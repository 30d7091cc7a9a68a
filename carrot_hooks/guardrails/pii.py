"""Code-aware PII redaction with Presidio (in process) and per-request placeholder restore.

Pattern recognizers (email, phone, card, IBAN, SSN, IP, YAML-defined ones) run on
the whole prompt; spaCy NER (PERSON) runs on prose only, and there only on short
windows around capitalised words that could start a name; findings that look like
code (identifiers, dotted names, private/loopback IPs, bare numeric literals) are
dropped, so code reaches the model unchanged. Runs offline: tldextract uses its
bundled suffix list, spaCy loads an installed pipeline or none (patterns-only mode).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import ipaddress
import logging
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import spacy
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig
from spacy.lang.en.stop_words import STOP_WORDS

from .segments import is_code, prose_mask
from .settings import PiiSettings

log = logging.getLogger("carrot.guardrails.pii")

# Offline public-suffix lookup: the snapshot bundled with tldextract, never an HTTP fetch.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
_WORD = re.compile(r"\S+")
_LETTERS = re.compile(r"[^\W\d_]+")
_SPACE = re.compile(r"\s")
_MAX_TOKEN = 512  # longest run without whitespace a window is widened over
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*_\d+)>")
_MC = re.compile(r"^Ma?c(?=[A-Z])")  # McConnan, MacLeod
_NAME_JOINERS = re.compile(r"['\u2019-]")  # O'Brien, Jean-Luc
_POSSESSIVE = re.compile(r"['\u2019]s$")
_SUFFIX = re.compile(r"(?:II|III|IV|Jr\.?|Sr\.?)")
# Words of context kept on each side of a candidate name: the NER model sees 4 tokens each way.
_NER_CONTEXT_WORDS = 8
# spaCy pipes NER does not need (en_core_web_* NER carries its own tok2vec).
_NOT_FOR_NER = ("tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")


class PatternsOnlyNlpEngine(SpacyNlpEngine):
    """NLP engine for the pattern pass: no tokenization (pattern recognizers only need the text).

    Skips ~20 ms of tokenizing per 4 KB; the price is Presidio's context-word score boost,
    which the thresholds in the policy do not rely on.
    """

    @classmethod
    def blank(cls) -> PatternsOnlyNlpEngine:
        """The engine over a blank English pipeline (nothing to download or load)."""
        engine = cls(models=[{"lang_code": "en", "model_name": "blank"}])
        engine.nlp = {"en": spacy.blank("en")}
        return engine

    def process_text(self, text: str, language: str):
        return super().process_text("", language)


def _windows(text: str, anchor: re.Pattern, reach: int) -> list[tuple[int, int]]:
    """Merged spans around each `anchor` match: `reach` chars each side, widened to whitespace."""
    spans: list[tuple[int, int]] = []
    for m in anchor.finditer(text):
        lo, hi = max(0, m.start() - reach), min(len(text), m.end() + reach)
        floor = max(0, lo - _MAX_TOKEN)
        while lo > floor and not text[lo - 1].isspace():
            lo -= 1
        space = _SPACE.search(text, hi, hi + _MAX_TOKEN)
        hi = space.start() if space else min(len(text), hi + _MAX_TOKEN)
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
        else:
            spans.append((lo, hi))
    return spans


class Windowed:
    """Mixin: run a Presidio recognizer only on windows around cheap anchor matches.

    Presidio's regexes and python-phonenumbers scan the whole text, yet on code almost none of
    it can hold the entity; windows are widened to whitespace, so the matches are the same.
    """

    anchor: re.Pattern
    reach = 3

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for lo, hi in _windows(text, self.anchor, self.reach):
            for r in super().analyze(text[lo:hi], entities, nlp_artifacts=None):
                r.start, r.end = r.start + lo, r.end + lo
                out.append(r)
        return out


class OfflineEmailRecognizer(Windowed, EmailRecognizer):
    """Presidio's email recognizer validated against the bundled suffix list (no network), around `@`s."""

    anchor = re.compile("@")

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


class WindowedPhoneRecognizer(Windowed, PhoneRecognizer):
    """Presidio's phone recognizer around digit runs that could be numbers (~100 ms per 4 KB otherwise)."""

    anchor = re.compile(r"[+(]?\d[\d \t().-]{5,}\d")


class WindowedIpRecognizer(Windowed, IpRecognizer):
    """Presidio's IP recognizer around dotted quads and colon groups."""

    anchor = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:")


@dataclass
class Vault:
    """Stable placeholders for one request: the same value always maps to the same `<LABEL_n>`."""

    by_value: dict[str, str] = field(default_factory=dict)
    by_placeholder: dict[str, str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def placeholder(self, label: str, value: str) -> str:
        """The placeholder for `value`, minting `<LABEL_n>` on first sight."""
        if value not in self.by_value:
            self.counts[label] += 1
            ph = f"<{label}_{self.counts[label]}>"
            self.by_value[value] = ph
            self.by_placeholder[ph] = value
        return self.by_value[value]

    def restore(self, text: str) -> str:
        """`text` with every known placeholder replaced by its original value."""
        if not self.by_placeholder or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.by_placeholder.get(m.group(0), m.group(0)), text)

    def __repr__(self) -> str:  # never print the originals
        return f"Vault({len(self.by_value)} values)"

    __str__ = __repr__


@dataclass(frozen=True)
class PiiHit:
    """One redacted entity (type and position only)."""

    entity: str
    start: int
    end: int


def _is_name_part(part: str) -> bool:
    """Maria, Ödön, O, McConnan: letters only, capitalised, the rest lower case."""
    part = _MC.sub("", part)
    return part.isalpha() and part[0].isupper() and (len(part) == 1 or part[1:].islower())


def _is_name(value: str, technical: frozenset[str]) -> bool:
    """True when `value` is shaped like a person's name, not code.

    Every word is a capitalised name part (Maria, O'Brien, Jean-Luc, McConnan), an initial
    (J.), a short lower-case particle between name parts (van, de, ten) or a trailing suffix
    (II, Jr.); no technical term; identifiers (`self.info`, `getValue`, `MAX_SIZE`) never are.
    """
    words = value.split()
    if not words or any(w in technical for w in words):
        return False
    named = False
    for i, w in enumerate(words):
        if len(w) > 1 and all(_is_name_part(part) for part in _NAME_JOINERS.split(w)):
            named = True
        elif not (
            _is_name_part(w.removesuffix(".")) and len(w.removesuffix(".")) == 1  # initial: J or J.
            or (0 < i < len(words) - 1 and w.isalpha() and w.islower() and len(w) <= 3)  # particle: van, de
            or (i == len(words) - 1 and i > 0 and _SUFFIX.fullmatch(w))
        ):
            return False
    return named


class _Memo:
    """Bounded LRU of analysis results keyed by the text's digest (never holds the text itself)."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).digest()

    def get(self, key: bytes):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: bytes, value) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)


@functools.cache
def _load_spacy(names: tuple[str, ...]) -> tuple[spacy.language.Language | None, str]:
    """The first installed pipeline of `names` with only its NER loaded (once per process), else (None, "none")."""
    for name in names:
        try:
            return spacy.load(name, exclude=list(_NOT_FOR_NER)), name
        except OSError:
            continue
    return None, "none"


class PiiRedactor:
    """Presidio analyzer + anonymizer configured from the `pii:` section of the policy."""

    def __init__(self, settings: PiiSettings):
        self.settings = settings
        self.labels = {**settings.pattern_entities, **settings.ner_entities}
        self._allow_nets = [ipaddress.ip_network(n) for n in settings.ip_allow_networks]
        self._nlp, self.model_name = _load_spacy(settings.spacy_models)
        self.mode = "ner" if self._nlp is not None and settings.ner_entities else "patterns"
        log.warning(
            "PII redaction mode: %s (%s)",
            self.mode,
            f"spaCy pipeline {self.model_name}" if self.mode == "ner" else "no spaCy pipeline installed: pattern recognizers only",
        )
        self._patterns = AnalyzerEngine(
            registry=self._registry(), nlp_engine=PatternsOnlyNlpEngine.blank(), supported_languages=["en"]
        )
        ner_config = NerModelConfiguration()
        # spaCy label -> Presidio entity, for the entities the policy wants from NER (PERSON <- PERSON, PER)
        self._ner_labels = {
            label: entity for label, entity in ner_config.model_to_presidio_entity_mapping.items()
            if entity in settings.ner_entities
        }
        self._ner_score = ner_config.default_score
        self._stop_words = STOP_WORDS | {w.capitalize() for w in STOP_WORDS}
        self._memo = _Memo(2048)
        self._pattern_entities = sorted({*settings.pattern_entities, *(c.entity for c in settings.custom_recognizers)})
        self._anonymizer = AnonymizerEngine()

    def _registry(self) -> RecognizerRegistry:
        registry = RecognizerRegistry(supported_languages=["en"])
        builtin = {
            "EMAIL_ADDRESS": OfflineEmailRecognizer,
            "PHONE_NUMBER": WindowedPhoneRecognizer,
            "CREDIT_CARD": CreditCardRecognizer,
            "IBAN_CODE": IbanRecognizer,
            "US_SSN": UsSsnRecognizer,
            "IP_ADDRESS": WindowedIpRecognizer,
        }
        for entity in self.settings.pattern_entities:
            if entity in builtin:
                registry.add_recognizer(builtin[entity]())
        for custom in self.settings.custom_recognizers:
            registry.add_recognizer(
                PatternRecognizer(
                    supported_entity=custom.entity,
                    name=f"yaml_{custom.entity.lower()}",
                    patterns=[Pattern(f"{custom.entity}_{i}", p, custom.score) for i, p in enumerate(custom.patterns)],
                    context=list(custom.context),
                    global_regex_flags=re.MULTILINE | re.DOTALL,  # case-sensitive: the YAML says (?i) where needed
                )
            )
        return registry

    def _threshold(self, entity: str) -> float:
        return self.settings.entity_thresholds.get(entity, self.settings.score_threshold)

    def _keep(self, r: RecognizerResult, text: str, mask: str) -> bool:
        value = text[r.start : r.end]
        if r.score < self._threshold(r.entity_type):
            return False
        if r.entity_type in self.settings.ner_entities:  # from NER or a YAML pattern: prose only
            return not is_code(mask, r.start, r.end) and _is_name(value, self.settings.technical_terms)
        if r.entity_type == "IP_ADDRESS":
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                return False
            before = text[max(0, r.start - 8) : r.start].lower()
            return not any(ip in net for net in self._allow_nets) and not re.search(r"(?:v|version\s*=?\s*[\"']?)$", before)
        if r.entity_type == "PHONE_NUMBER" and is_code(mask, r.start, r.end):
            return bool(re.search(r"[\s().+-]", value))  # a bare numeric literal in code is not a phone number
        return True

    def analyze(self, text: str) -> list[PiiHit]:
        """PII entities in `text`, code-aware, non-overlapping, sorted by position.

        Memoized by digest: chat clients resend the whole history every turn, so most messages repeat.
        """
        if not text.strip():
            return []
        key = self._memo.key(text)
        hits = self._memo.get(key)
        if hits is None:
            hits = self._analyze(text)
            self._memo.put(key, hits)
        return list(hits)

    def _analyze(self, text: str) -> tuple[PiiHit, ...]:
        mask = prose_mask(text)
        results = self._patterns.analyze(text=text, language="en", entities=self._pattern_entities)
        if self.mode == "ner":
            results += self._ner_on_prose(mask)
        kept = sorted((r for r in results if self._keep(r, text, mask)), key=lambda r: (r.start, -(r.end - r.start)))
        hits: list[PiiHit] = []
        for r in kept:
            if hits and r.start < hits[-1].end:
                continue
            hits.append(PiiHit(r.entity_type, r.start, r.end))
        return tuple(hits)

    def _may_name(self, word: str) -> bool:
        """Cheap gate before NER: a capitalised word that is neither a stop word nor a technical term."""
        return any(
            w[0].isupper() and w not in self._stop_words and w not in self.settings.technical_terms
            for w in _LETTERS.findall(word)
        )

    def _candidate_windows(self, mask: str) -> list[tuple[int, int]]:
        """Spans of `mask` (within one line) around words that could start a name, merged."""
        spans: list[tuple[int, int]] = []
        pos = 0
        for line in mask.split("\n"):
            words = [m.span() for m in _WORD.finditer(line)]
            last = -1  # index of the last word already in a window
            for i, (s, e) in enumerate(words):
                if not self._may_name(line[s:e]):
                    continue
                lo, hi = max(0, i - _NER_CONTEXT_WORDS), min(len(words) - 1, i + _NER_CONTEXT_WORDS)
                if last >= 0 and lo <= last + 1:
                    spans[-1] = (spans[-1][0], pos + words[hi][1])
                else:
                    spans.append((pos + words[lo][0], pos + words[hi][1]))
                last = hi
            pos += len(line) + 1
        return spans

    def _ner_on_prose(self, mask: str) -> list[RecognizerResult]:
        """spaCy NER over the candidate windows of the prose (one doc), offsets mapped back to `mask`."""
        windows = self._candidate_windows(mask)
        if not windows:
            return []
        starts, pieces, pos = [], [], 0
        for s, e in windows:
            starts.append(pos)
            pieces.append(mask[s:e])
            pos += e - s + 1
        doc = self._nlp("\n".join(pieces))
        out = []
        for ent in doc.ents:
            entity = self._ner_labels.get(ent.label_)
            if entity is None:
                continue
            # an entity never spans windows or lines ("Jamie Pratt\nTalking-books"), nor a possessive 's
            text = _POSSESSIVE.sub("", ent.text.split("\n", 1)[0].rstrip())
            if not text:
                continue
            i = bisect.bisect_right(starts, ent.start_char) - 1
            start = ent.start_char + windows[i][0] - starts[i]
            out.append(RecognizerResult(entity, start, start + len(text), self._ner_score))
        return out

    def redact(self, text: str, vault: Vault) -> tuple[str, list[PiiHit]]:
        """`text` with each PII entity replaced by its stable placeholder from `vault`."""
        hits = self.analyze(text)
        if not hits:
            return text, []
        for h in hits:  # mint in reading order so <EMAIL_1> is the first email
            vault.placeholder(self.labels[h.entity], text[h.start : h.end])
        operators = {
            entity: OperatorConfig("custom", {"lambda": lambda v, label=label: vault.placeholder(label, v)})
            for entity, label in self.labels.items()
        }
        results = [RecognizerResult(h.entity, h.start, h.end, 1.0) for h in hits]
        out = self._anonymizer.anonymize(text=text, analyzer_results=results, operators=operators)
        return out.text, hits
