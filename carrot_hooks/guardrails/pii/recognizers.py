"""The Presidio recognizers the redactor runs: the built-in ones (windowed, offline) and the YAML ones.

Built-in recognizers are Presidio's own; the subclasses here only limit where they run (cheap
anchors) or make them offline. YAML `custom_recognizers` become Presidio PatternRecognizers,
their regexes compiled when the policy loads (`settings.CustomRecognizer`).
"""

from __future__ import annotations

import re

import regex
import spacy
import tldextract
from presidio_analyzer import (
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

from ..settings import PiiSettings

# Offline public-suffix lookup: the snapshot bundled with tldextract, never an HTTP fetch.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
_SPACE = re.compile(r"\s")
_MAX_TOKEN = 512  # longest run without whitespace a window is widened over


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


def windows(text: str, anchor: re.Pattern, reach: int) -> list[tuple[int, int]]:
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
        for lo, hi in windows(text, self.anchor, self.reach):
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


class WindowedIbanRecognizer(Windowed, IbanRecognizer):
    """Presidio's IBAN recognizer after a country code and check digits, case-insensitive (its checksum
    check upper-cases the value); the window reaches over the longest IBAN written in groups."""

    anchor = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")
    reach = 42

    def __init__(self):
        super().__init__(regex_flags=regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)


_BUILTIN = {
    "EMAIL_ADDRESS": OfflineEmailRecognizer,
    "PHONE_NUMBER": WindowedPhoneRecognizer,
    "CREDIT_CARD": CreditCardRecognizer,
    "IBAN_CODE": WindowedIbanRecognizer,
    "US_SSN": UsSsnRecognizer,
    "IP_ADDRESS": WindowedIpRecognizer,
}
BUILTIN_ENTITIES = frozenset(_BUILTIN)  # what `pii.pattern_entities` may name besides YAML recognizers


def registry(settings: PiiSettings) -> RecognizerRegistry:
    """Presidio's recognizers for the policy's pattern entities plus the YAML-defined ones."""
    reg = RecognizerRegistry(supported_languages=["en"])
    for entity in settings.pattern_entities:
        if entity in _BUILTIN:
            reg.add_recognizer(_BUILTIN[entity]())
    for custom in settings.custom_recognizers:
        reg.add_recognizer(
            PatternRecognizer(
                supported_entity=custom.entity,
                name=f"yaml_{custom.entity.lower()}",
                patterns=[Pattern(f"{custom.entity}_{i}", p, custom.score) for i, p in enumerate(custom.patterns)],
                context=list(custom.context),
                global_regex_flags=re.MULTILINE | re.DOTALL,  # case-sensitive: the YAML says (?i) where needed
            )
        )
    return reg
