"""The Presidio recognizers the redactor runs: the built-in ones (windowed, offline) and the YAML ones.

Built-in recognizers are Presidio's own; the subclasses here limit where they run (cheap anchors),
make them offline, read phone numbers per policy region and context, and match IBANs in any case.
YAML `custom_recognizers` become Presidio PatternRecognizers, their regexes compiled when the policy
loads (`settings.CustomRecognizer`), optionally extended over an address block's following lines.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
import regex
import spacy
import tldextract
from presidio_analyzer import (
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

from ..settings import LineBlock, PhoneSettings, PiiSettings

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


class NoContextEnhancer(ContextAwareEnhancer):
    """Context enhancement for the pattern pass: none. Without tokens (above) Presidio's lemma enhancer
    can boost nothing, yet it deep-copies every result (~3 ms per 4 KB of prose); phone context is ours."""

    def __init__(self):
        super().__init__(0.0, 0.0, 0, 0)

    def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
        return raw_results


def windows(text: str, anchor: re.Pattern, reach: int) -> list[tuple[int, int]]:
    """Merged spans around each `anchor` match: `reach` chars each side, widened to whitespace."""
    spans: list[tuple[int, int]] = []
    for m in anchor.finditer(text):
        lo, hi = max(0, m.start() - reach), min(len(text), m.end() + reach)
        if not spans or lo > spans[-1][1]:  # else merged: the previous span's start stands (no walk back)
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


def _result(recognizer, start: int, end: int, score: float) -> RecognizerResult:
    """A finding of `recognizer`'s entity, named as Presidio names its own recognizers' findings."""
    return RecognizerResult(recognizer.supported_entities[0], start, end, score, recognition_metadata={
        RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id})


# A phone-shaped run: digit groups split by spaces, dots, dashes, slashes or parentheses, with an optional
# +/00 prefix and extension; not glued to a word, a decimal or a version (1.2.3) on either side.
_PHONE_SHAPE = regex.compile(
    r"(?<![\w.+/-])(?:\+|\(\+?)?\d[\d \t().\/-]{4,48}\d"
    r"(?:[ \t]*,?[ \t]*\(?(?i:ext|extension|x)[ \t.:]*\d{1,6}\)?)?(?![\w]|[.\/-]\d)")
_DIGIT = regex.compile(r"\d")
# Numbers listed in one run ("0161 496 0734 / 0161 496 0735", "... 0958 - 2 lines"): a spaced slash or dash
_JOINER = regex.compile(r"[ \t]+[/-][ \t]+")
# Dates (2024-11-05, 05.11.2024, 11/05/2024) are no phone numbers: log lines are full of them
_DATE = regex.compile(r"(?:19|20)\d\d([-/.])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?!\d)"
                      r"|(?<!\d)(?:0?[1-9]|[12]\d|3[01])([-/.])(?:0?[1-9]|1[0-2])\2(?:19|20)\d\d")


class PhoneFamilyRecognizer(PhoneRecognizer):
    """Phone numbers by python-phonenumbers per region (policy `pii.phone`), in phone-shaped digit runs.

    Without context (and with `min_digits_alone` digits, so no local number): an international number
    (+, 00) valid for its country, or a national one with separators, valid for a policy region and
    grouped as that region writes it (STRICT_GROUPING); a bare run of digits is as often an ID. Next to
    a context phrase: any number of `min_digits`+ digits possible for a region (local 7-digit numbers,
    unassigned ranges). Context is read from the raw text: the pattern pass has no tokens for Presidio's
    context enhancer.
    """

    SCORE = 0.6

    def __init__(self, phone: PhoneSettings):
        super().__init__(supported_regions=phone.regions, leniency=phonenumbers.Leniency.VALID)
        self.phone = phone
        self._before = regex.compile("|".join(phone.context_before) or "(?!)", regex.IGNORECASE)
        self._after = regex.compile(phone.context_after, regex.IGNORECASE)
        self._number = functools.lru_cache(maxsize=4096)(self._number_uncached)  # runs repeat (logs, tables)

    def analyze(self, text: str, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for m in _PHONE_SHAPE.finditer(text):
            if _DATE.search(m.group()):
                continue
            start = m.start()
            for part in _JOINER.split(m.group()):
                end = start + len(part)
                before = text[max(0, start - self.phone.context_chars) : start]
                context = bool(self._before.search(before) or self._after.match(text, end, end + 40))
                found = self._number(part, context)
                if found is not None:
                    out.append(_result(self, start + found.start, start + found.end, self.SCORE))
                start = end + len(_JOINER.match(text, end).group()) if end < m.end() else end
        return out

    def _number_uncached(self, value: str, context: bool) -> phonenumbers.PhoneNumberMatch | None:
        """The first region's match covering most of `value` under the leniency its shape and context allow."""
        international = value.startswith(("+", "(+", "00"))
        least = self.phone.min_digits if context else self.phone.min_digits_alone
        if len(_DIGIT.findall(value)) < least:
            return None
        if context:
            leniency = phonenumbers.Leniency.POSSIBLE
        elif international:
            leniency = phonenumbers.Leniency.VALID
        elif not value.isdigit():  # separators: a national layout
            leniency = phonenumbers.Leniency.STRICT_GROUPING
        else:
            return None
        for region in self.supported_regions:
            if not self._plausible(value, region, context):  # 5x cheaper than the matcher: most regions stop here
                continue
            for match in phonenumbers.PhoneNumberMatcher(value, region, leniency=leniency):
                digits = len(_DIGIT.findall(match.raw_string)) - len(match.number.extension or "")
                if match.end - match.start >= len(value) * 2 // 3 and digits >= least:
                    return match
        return None

    @staticmethod
    def _plausible(value: str, region: str, context: bool) -> bool:
        """`value` parses for `region` as a possible (with context) or valid number."""
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.is_possible_number(number) if context else phonenumbers.is_valid_number(number)


class WindowedIpRecognizer(Windowed, IpRecognizer):
    """Presidio's IP recognizer around dotted quads and colon groups."""

    anchor = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:")


class AnyCaseIbanRecognizer(IbanRecognizer):
    """Presidio's IBAN pattern and checksum in any case ("de89 3704 ..."): the longest prefix of each match
    that ends at a group boundary and validates, so a word after the IBAN ("... 1768 when") that the
    case-insensitive pattern reads as one more group does not spoil it."""

    def __init__(self):
        super().__init__(regex_flags=regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)

    def analyze(self, text: str, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for pattern in self.patterns:
            for m in regex.finditer(pattern.regex, text, flags=self.global_regex_flags):
                value = m.group()
                ends = [len(value)] + [i for i in range(len(value) - 1, 14, -1) if value[i] in " -"]
                end = next((e for e in ends if self.validate_result(value[:e].upper())), None)
                if end is not None:
                    out.append(_result(self, m.start(), m.start() + end, 1.0))
        return out


class WindowedIbanRecognizer(Windowed, AnyCaseIbanRecognizer):
    """The IBAN recognizer after a country code and check digits; the window reaches over the longest IBAN
    written in groups."""

    anchor = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")
    reach = 42


_BUILTIN = {  # entity -> recognizer from the policy's pii settings
    "EMAIL_ADDRESS": lambda _: OfflineEmailRecognizer(),
    "PHONE_NUMBER": lambda settings: PhoneFamilyRecognizer(settings.phone),
    "CREDIT_CARD": lambda _: CreditCardRecognizer(),
    "IBAN_CODE": lambda _: WindowedIbanRecognizer(),
    "US_SSN": lambda _: UsSsnRecognizer(),
    "IP_ADDRESS": lambda _: WindowedIpRecognizer(),
}
BUILTIN_ENTITIES = frozenset(_BUILTIN)  # what `pii.pattern_entities` may name besides YAML recognizers
_LINE_REST = re.compile(r"[ \t.,;]*(?:\n|$)")


class BlockPatternRecognizer(PatternRecognizer):
    """A YAML PatternRecognizer; with a `block` (`CustomRecognizer.block`), a match that ends its line extends
    over the block's following lines: a postal address's unit, town and postcode lines."""

    def __init__(self, block: LineBlock | None, **kwargs):
        super().__init__(**kwargs)
        self.block = block
        if block is not None:
            self._ends, self._through = regex.compile(block.ends), regex.compile(block.through)

    def analyze(self, text: str, entities, nlp_artifacts=None, regex_flags=None) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        if self.block is not None:
            for r in results:
                r.end = self._block_end(text, r.end)
        return results

    def _block_end(self, text: str, end: int) -> int:
        rest = _LINE_REST.match(text, end)
        if rest is None:
            return end
        best, pos, blank = end, rest.end(), False
        for _ in range(self.block.max_lines):
            if pos >= len(text):
                break
            line_end = text.find("\n", pos)
            line_end = len(text) if line_end < 0 else line_end
            line = text[pos:line_end]
            if self._ends.fullmatch(line):
                best, blank = line_end, False
            elif not line.strip():
                if blank:
                    break
                blank = True
            elif self._through.fullmatch(line):
                blank = False
            else:
                break
            pos = line_end + 1
        return best


def registry(settings: PiiSettings) -> RecognizerRegistry:
    """Presidio's recognizers for the policy's pattern entities plus the YAML-defined ones."""
    reg = RecognizerRegistry(supported_languages=["en"])
    for entity in settings.pattern_entities:
        if entity in _BUILTIN:
            reg.add_recognizer(_BUILTIN[entity](settings))
    for custom in settings.custom_recognizers:
        reg.add_recognizer(
            BlockPatternRecognizer(
                custom.block,
                supported_entity=custom.entity,
                name=f"yaml_{custom.entity.lower()}",
                patterns=[Pattern(f"{custom.entity}_{i}", p, custom.score) for i, p in enumerate(custom.patterns)],
                global_regex_flags=re.MULTILINE | re.DOTALL,  # case-sensitive: the YAML says (?i) where needed
            )
        )
    return reg
