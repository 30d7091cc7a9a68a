"""Code-aware PII redaction with Presidio (in process) and per-request placeholder restore.

Pattern recognizers (email, phone, card, IBAN, SSN, IP, YAML-defined ones) run on
the whole prompt; spaCy NER (PERSON) runs on prose only; findings that look like
code (identifiers, dotted names, private/loopback IPs, bare numeric literals) are
dropped, so code reaches the model unchanged. Runs offline: tldextract uses its
bundled suffix list, spaCy loads an installed pipeline or none (patterns-only mode).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections import Counter
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
    SpacyRecognizer,
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
_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+\b")
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*_\d+)>")
_TECHNICAL_SHAPE = re.compile(r"[_.()\[\]{}=/\\:;<>#@$0-9]|[a-z][A-Z]|^[A-Z]{2,}$|^[a-z]")


class PatternsOnlyNlpEngine(SpacyNlpEngine):
    """NLP engine for the pattern pass: no tokenization (pattern recognizers only need the text).

    Skips ~20 ms of tokenizing per 4 KB; the price is Presidio's context-word score boost,
    which the thresholds in the policy do not rely on.
    """

    def process_text(self, text: str, language: str):
        return super().process_text("", language)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer validated against the bundled suffix list (no network)."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


class WindowedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer run only around digit runs that could be numbers.

    python-phonenumbers scans the whole text once per region, which costs ~100 ms on 4 KB;
    running it on the candidate windows gives the same matches for a fraction of the cost.
    """

    _CANDIDATE = re.compile(r"[+(]?\d[\d \t().-]{5,}\d")

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for m in self._CANDIDATE.finditer(text):
            start, end = max(0, m.start() - 3), min(len(text), m.end() + 3)
            for r in super().analyze(text[start:end], entities, nlp_artifacts=None):
                r.start, r.end = r.start + start, r.end + start
                out.append(r)
        return out


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


@functools.cache
def _load_spacy(names: tuple[str, ...]) -> tuple[spacy.language.Language | None, str]:
    """The first installed pipeline of `names` (loaded once per process), else (None, "none")."""
    for name in names:
        try:
            return spacy.load(name, enable=["ner"]), name  # only NER runs: no tagger/parser cost
        except OSError:
            continue
    return None, "none"


class PiiRedactor:
    """Presidio analyzer + anonymizer configured from the `pii:` section of the policy."""

    def __init__(self, settings: PiiSettings):
        self.settings = settings
        self.labels = {**settings.pattern_entities, **settings.ner_entities}
        self._allow_nets = [ipaddress.ip_network(n) for n in settings.ip_allow_networks]
        model, self.model_name = _load_spacy(settings.spacy_models)
        self.mode = "ner" if model is not None and settings.ner_entities else "patterns"
        log.warning(
            "PII redaction mode: %s (%s)",
            self.mode,
            f"spaCy pipeline {self.model_name}" if self.mode == "ner" else "no spaCy pipeline installed: pattern recognizers only",
        )
        self._patterns = AnalyzerEngine(
            registry=self._registry(), nlp_engine=self._nlp_engine(spacy.blank("en"), PatternsOnlyNlpEngine),
            supported_languages=["en"],
        )
        self._ner: AnalyzerEngine | None = None
        if self.mode == "ner":
            ner_registry = RecognizerRegistry(supported_languages=["en"])
            ner_registry.add_recognizer(SpacyRecognizer(supported_entities=list(settings.ner_entities)))
            self._ner = AnalyzerEngine(registry=ner_registry, nlp_engine=self._nlp_engine(model), supported_languages=["en"])
        self._anonymizer = AnonymizerEngine()

    @staticmethod
    def _nlp_engine(nlp: spacy.language.Language, cls: type[SpacyNlpEngine] = SpacyNlpEngine) -> SpacyNlpEngine:
        engine = cls(
            models=[{"lang_code": "en", "model_name": nlp.meta.get("name", "blank")}],
            ner_model_configuration=NerModelConfiguration(labels_to_ignore=["CARDINAL", "ORDINAL", "QUANTITY"]),
        )
        engine.nlp = {"en": nlp}
        return engine

    def _registry(self) -> RecognizerRegistry:
        registry = RecognizerRegistry(supported_languages=["en"])
        builtin = {
            "EMAIL_ADDRESS": OfflineEmailRecognizer,
            "PHONE_NUMBER": WindowedPhoneRecognizer,
            "CREDIT_CARD": CreditCardRecognizer,
            "IBAN_CODE": IbanRecognizer,
            "US_SSN": UsSsnRecognizer,
            "IP_ADDRESS": IpRecognizer,
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
                )
            )
        return registry

    def _threshold(self, entity: str) -> float:
        return self.settings.entity_thresholds.get(entity, self.settings.score_threshold)

    def _keep(self, r: RecognizerResult, text: str, mask: str) -> bool:
        value = text[r.start : r.end]
        if r.score < self._threshold(r.entity_type):
            return False
        if r.entity_type in self.settings.ner_entities:
            words = value.split()
            return not any(w in self.settings.technical_terms or _TECHNICAL_SHAPE.search(w) for w in words)
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

        Memoized: chat clients resend the whole history every turn, so most messages repeat.
        """
        return list(self._analyze_cached(text)) if text.strip() else []

    @functools.lru_cache(maxsize=2048)  # noqa: B019 - one redactor per policy version, bounded
    def _analyze_cached(self, text: str) -> tuple[PiiHit, ...]:
        mask = prose_mask(text)
        results = self._patterns.analyze(text=text, language="en", entities=list(self.settings.pattern_entities))
        if self._ner is not None and re.search(r"[A-Z][a-z]", mask):
            results += self._ner_on_prose(mask)
        kept = sorted((r for r in results if self._keep(r, text, mask)), key=lambda r: (r.start, -(r.end - r.start)))
        hits: list[PiiHit] = []
        for r in kept:
            if hits and r.start < hits[-1].end:
                continue
            hits.append(PiiHit(r.entity_type, r.start, r.end))
        return tuple(hits)

    def _may_name(self, line: str) -> bool:
        """Cheap gate before NER: a capitalized word that is neither a stop word nor a technical term."""
        return any(
            w.lower() not in STOP_WORDS and w not in self.settings.technical_terms for w in _CAPITALIZED.findall(line)
        )

    def _ner_on_prose(self, mask: str) -> list[RecognizerResult]:
        """NER over the prose runs only (joined compactly), with offsets mapped back to `mask`."""
        joined, starts, pos, offset = [], [], 0, 0
        for line in mask.split("\n"):
            stripped = line.strip()
            if stripped and self._may_name(stripped):
                starts.append((pos, offset + len(line) - len(line.lstrip())))
                joined.append(stripped)
                pos += len(stripped) + 1
            offset += len(line) + 1
        compact = "\n".join(joined)
        out = []
        for r in self._ner.analyze(text=compact, language="en", entities=list(self.settings.ner_entities)):
            base = max(b for b in starts if b[0] <= r.start)
            r.start, r.end = r.start - base[0] + base[1], r.end - base[0] + base[1]
            if "\n" not in compact[r.start - base[1] + base[0] : r.end - base[1] + base[0]]:
                out.append(r)
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
