"""The PII stage: which finding counts where (code or prose), and redaction into vault placeholders."""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass

import regex
from presidio_analyzer import AnalyzerEngine, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration

from ..settings import PiiSettings
from .code import Layout, layout
from .memo import Memo
from .names import (
    English,
    Gazetteer,
    Introducers,
    introduced,
    is_name,
    load_spacy,
    name_candidates,
    ner_names,
    trim_stop_words,
)
from .recognizers import NoContextEnhancer, PatternsOnlyNlpEngine, registry
from .vault import Vault

log = logging.getLogger("carrot.guardrails.pii")

# The only entities that count inside code, each validated by checksum or format (see `_keep_in_code`).
CODE_ENTITIES = frozenset({"CREDIT_CARD", "IBAN_CODE", "US_SSN", "EMAIL_ADDRESS"})
_BUILTIN_CARD = "CreditCardRecognizer"  # Luhn-validated
_SSN_IN_CODE = re.compile(r"\d{3}-\d{2}-\d{4}")
_VERSION_BEFORE = re.compile(r"(?:\bv|version\s*=?\s*[\"']?)$", re.IGNORECASE)
# A value written as data outside a literal: `card=4111...` (env files, logs; `x = 4111` is code) or a
# YAML/config `key: value` line (`ssn: 123-45-6789`).
_DATA_VALUE_BEFORE = re.compile(r"(?:(?<![\s=!<>])=|^[ \t]*[\w.-]+:[ \t]+)$")
# An unquoted config value (`OWNER=a@b.io`, `email: a@b.io`) or a mail header address (`Name <a@b.io>`).
_VALUE_BEFORE = re.compile(r"(?:[=:][ \t]*|<)$")
# A "name" that ends in or is followed by a street or company designator is an address or a firm.
_NOT_A_PERSON_AFTER = re.compile(
    r"^[ \t]*(?:Str\.?|Street|St\.|Road|Rd\.?|Avenue|Ave\.?|Sq\.?|Square|Lane|Drive|Boulevard|Blvd\.?|Way|Place|"
    r"Suite|Apt\.?|Inc\.?|Ltd\.?|LLC|GmbH|Corp\.?|Co\.|PLC|and Sons|Orchestra|Group|Foundation)(?!\w)")
# "a class named Widget", "the service called Billing": what follows names a code or project thing.
_THING_NAMED_BEFORE = re.compile(
    r"\b(?:class|function|method|module|package|component|type|interface|struct|enum|table|column|field|"
    r"variable|file|folder|service|repo|repository|project|app|model|branch|job|bucket|library|plugin|"
    r"endpoint|test|command|script|queue|topic|channel)(?:es|s)?[ \t]+(?:named|called)[ \t]+$", re.IGNORECASE)
_NEXT_WORD = re.compile(r"[ \t]+(\w+)")
_HOUSE_NUMBER_AFTER = re.compile(r"[ \t]+\d{1,5}[a-z]?(?:[,.]?[ \t]*$|[,.]?[ \t]*\n|,)")  # "Joaquin Suarez 2906": a street
# "the Adam optimizer", "a Jasmine test", "the Grace period": one name word right after a determiner
# names a thing (unless a phrase introduced it: "the name's Ines"); a full name stays ("a Ravil Yefimov
# concert"). "that" after a verb or adjective that takes a clause starts one ("I heard that Isabel left").
_DETERMINER_BEFORE = re.compile(r"\b(?:the|a|an|this|that|these|those|its)[ \t]+$", re.IGNORECASE)
_CLAUSE_THAT_BEFORE = re.compile(  # a verb (and its object pronoun) or word that takes a "that" clause;
    # not verbs whose object is often "that <thing>" (see, find, read, write, remember, forget)
    r"\b(?:says?|said|saying|tell|tells|told|hears?|heard|thinks?|thought|knows?|knew|believes?|believed|guess|"
    r"guessed|hopes?|hoped|notices?|noticed|reali[sz]es?|reali[sz]ed|means?|meant|shows?|showed|shown|"
    r"mentions?|mentioned|confirms?|confirmed|agrees?|agreed|learns?|learned|learnt|"
    r"claims?|claimed|explains?|explained|suggests?|suggested|reports?|reported|assumes?|assumed|doubt|"
    r"wish|feels?|felt|seems?|seemed|noted|warned|promised|decided|sure|glad|sorry|afraid|aware|"
    r"so|now|fact|possible|likely|true|out)(?:[ \t]+(?:me|us|him|her|them|you|everyone))?[\s,]+that[ \t]+$",
    re.IGNORECASE)
INTRODUCED = "introduced_name"  # recognizer name of names found after (or before) an introducing phrase
GAZETTEER = "name_gazetteer"  # recognizer name of given names that are no English words
_INTRODUCED_SCORE = 0.85
_COMMENT_LINE = re.compile(r"[ \t]*(?:#|//|\*|/\*)")  # used with match(text, line_start)
_COMMENT_BLOCK_LINES = 12  # how far up a comment block an attribution header is looked for
# How much of a long line is read around a code value: the part before the value, and a comment's head (a
# minified JSON line of 2,400 addresses read whole for each took 20 s); an attribution or `key=` between is not seen.
_LOOK_BACK = 400
_IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")  # 192.168.1.0 (or its /24): an address, never a phone


@dataclass(frozen=True)
class PiiHit:
    """One redacted entity (type and position only)."""

    entity: str
    start: int
    end: int


def _line_view(text: str, line_start: int, end: int) -> str:
    """`text[line_start:end]`, or for a long line its last _LOOK_BACK characters, after its first _LOOK_BACK when
    it is a comment ("# Copyright 2024 ... <a@b.io>"; the head of a data line covers none of its values)."""
    if end - line_start <= _LOOK_BACK:
        return text[line_start:end]
    tail = text[end - _LOOK_BACK : end]
    return text[line_start : line_start + _LOOK_BACK] + " " + tail if _COMMENT_LINE.match(text, line_start) else tail


def _in_url_authority(text: str, start: int, end: int) -> bool:
    """`user:pass@host` inside `scheme://…`, or `git@host:path`: an email shape that is not an address."""
    floor = max(0, start - _LOOK_BACK)  # an email's token is never longer
    token_start = max(max(text.rfind(c, floor, start) for c in " \t\n\"'`<(") + 1, floor)
    return "://" in text[token_start:start] or ":" in text[token_start:start] or text[end : end + 1] == ":"


def _person(start: int, end: int, recognizer: str) -> RecognizerResult:
    return RecognizerResult("PERSON", start, end, _INTRODUCED_SCORE,
                            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: recognizer})


def _recognizer(r: RecognizerResult) -> str:
    return (r.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY, "")


class PiiRedactor:
    """Presidio's analyzer and our name logic, configured from the `pii:` section of the policy."""

    def __init__(self, settings: PiiSettings):
        self.settings = settings
        self.labels = entity_labels(settings)
        self._allow_nets = [ipaddress.ip_network(n) for n in settings.ip_allow_networks]
        self._nlp, self.model_name = load_spacy(settings.spacy_models)
        self.mode = "ner" if self._nlp is not None and settings.ner_entities else "patterns"
        log.warning(
            "PII redaction mode: %s (%s)",
            self.mode,
            f"spaCy pipeline {self.model_name}: {self._nlp.meta['lang']}_{self._nlp.meta['name']} "
            f"{self._nlp.meta['version']}" if self.mode == "ner" else "no spaCy pipeline installed: pattern recognizers only",
        )
        self._patterns = AnalyzerEngine(
            registry=registry(settings), nlp_engine=PatternsOnlyNlpEngine.blank(), supported_languages=["en"],
            context_aware_enhancer=NoContextEnhancer(),
        )
        ner_config = NerModelConfiguration()
        # spaCy label -> Presidio entity, for the entities the policy wants from NER (PERSON <- PERSON, PER)
        self._ner_labels = {
            label: entity for label, entity in ner_config.model_to_presidio_entity_mapping.items()
            if entity in settings.ner_entities
        }
        self._ner_score = ner_config.default_score
        self._memo = Memo(2048)
        self._introducers = Introducers(settings.name_introducers)
        self._not_personal = regex.compile(settings.code_email_not_personal, regex.IGNORECASE)
        self._no_reply = regex.compile(settings.email_no_reply, regex.IGNORECASE)
        self._attribution = regex.compile("|".join(settings.code_email_attributions), regex.IGNORECASE) \
            if settings.code_email_attributions else None
        self._english = English(self._nlp, settings.common_word_names)
        self._gazetteer = Gazetteer.load(settings.name_gazetteer)
        entities = {*settings.pattern_entities, *(c.entity for c in settings.custom_recognizers)}
        self._code_entities = sorted(entities & CODE_ENTITIES)  # run on the whole text
        self._prose_entities = sorted(entities - CODE_ENTITIES)  # run on the prose only

    def _threshold(self, entity: str) -> float:
        return self.settings.entity_thresholds.get(entity, self.settings.score_threshold)

    def _keep_in_code(self, r: RecognizerResult, value: str, lay: Layout) -> bool:
        """Inside code only checksum- or format-validated values, and only as data: a card (Luhn), IBAN or
        SSN in a string literal or comment (a bare number or name is code: a constant, not a card), an
        email in a literal, a comment or as an unquoted config value, unless its line publishes authorship."""
        line_start = lay.text.rfind("\n", 0, r.start) + 1
        before = _line_view(lay.text, line_start, r.start)  # its line up to the value (a comment's head too)
        if r.entity_type in ("CREDIT_CARD", "US_SSN", "IBAN_CODE") and not lay.in_literal(r.start, r.end) \
                and not _DATA_VALUE_BEFORE.search(before):
            return False
        if r.entity_type == "CREDIT_CARD":
            return _recognizer(r) == _BUILTIN_CARD
        if r.entity_type == "US_SSN":
            return bool(_SSN_IN_CODE.fullmatch(value))
        if r.entity_type == "EMAIL_ADDRESS":
            if self._not_personal.search(value) or self._attributed(lay.text, line_start, before):
                return False  # "# Copyright 2020 Jane Doe <jane@x.org>", "python-dev@python.org"
            return lay.in_literal(r.start, r.end) or bool(_VALUE_BEFORE.search(before))
        return r.entity_type == "IBAN_CODE"

    def _attributed(self, text: str, line_start: int, before: str) -> bool:
        """`before` (its line up to the value), or an earlier line of the same comment block, publishes authorship."""
        if self._attribution is None:
            return False
        if self._attribution.search(before):
            return True
        for _ in range(_COMMENT_BLOCK_LINES):
            if not _COMMENT_LINE.match(text, line_start) or line_start == 0:
                return False
            prev_start = text.rfind("\n", 0, line_start - 1) + 1
            before, line_start = _line_view(text, prev_start, line_start - 1), prev_start
            if self._attribution.search(before):
                return True
        return False

    def _keep(self, r: RecognizerResult, lay: Layout) -> bool:
        text = lay.text
        value = text[r.start : r.end]
        if r.score < self._threshold(r.entity_type):
            return False
        if r.entity_type == "EMAIL_ADDRESS":
            if _in_url_authority(text, r.start, r.end):
                return False
            if "}" in value:  # a template, no address: f"{key}-cert-v01@openssh.com", {user}@{host}
                return False
            local = value.split("@")[0]
            r.start += max(local.rfind("="), local.rfind("{")) + 1  # OWNER=a@b.io, user={a@b.io}: starts after
            value = text[r.start : r.end]
            if self._no_reply.search(value):  # noreply@: nobody's, in code and prose
                return False
        if lay.is_code(r.start, r.end):
            return r.entity_type in CODE_ENTITIES and self._keep_in_code(r, value, lay)
        if r.entity_type in self.settings.ner_entities:  # from NER or a YAML pattern
            introduced = _recognizer(r) == INTRODUCED or _recognizer(r).startswith("yaml_")
            lower_ok = introduced or _recognizer(r) == GAZETTEER  # "my name is mieszko", "from ingrid nowak"
            if introduced:  # "named him anthony after her": the pattern's trailing stop words go
                value = trim_stop_words(value)
                r.end = r.start + len(value)
            last = value.split()[-1] if len(value.split()) > 1 else ""
            before, after = text[max(0, r.start - 40) : r.start], text[r.end : r.end + 16]
            street = self._gazetteer.streets  # "Inna Loop", "Alexander Flat": a street, not a person
            if _NOT_A_PERSON_AFTER.match(last) or _NOT_A_PERSON_AFTER.match(after) or _HOUSE_NUMBER_AFTER.match(after) \
                    or any(w in street for w in value.split()[1:]) \
                    or (m := _NEXT_WORD.match(after)) is not None and m.group(1) in street \
                    or _THING_NAMED_BEFORE.search(before):
                return False
            if not introduced and " " not in value and _DETERMINER_BEFORE.search(before) \
                    and not _CLAUSE_THAT_BEFORE.search(before):
                return False
            return is_name(value, self.settings.technical_terms, lower_ok=lower_ok)
        if r.entity_type == "IP_ADDRESS":
            return self._public_ip(text, r.start, value)
        if r.entity_type == "PHONE_NUMBER":
            return not _IPV4_SHAPE.fullmatch(value) and text[r.end : r.end + 1] != "/"
        return True

    def _public_ip(self, text: str, start: int, value: str) -> bool:
        """A routable address that is no version number and no slice (`data[::2]`) or short IPv6 shape."""
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return False
        if ip.version == 6 and sum(1 for g in value.split(":") if g) < 3:
            return False
        return not any(ip in net for net in self._allow_nets) and not _VERSION_BEFORE.search(text[max(0, start - 8) : start])

    def analyze(self, text: str) -> list[PiiHit]:
        """PII entities in `text`, code-aware, non-overlapping, sorted by position (memoized by digest)."""
        return list(self._memo.cached(text, self._analyze))

    def _analyze(self, text: str) -> tuple[PiiHit, ...]:
        lay = layout(text)
        results = self._patterns.analyze(text=text, language="en", entities=self._code_entities)
        if lay.prose.strip():
            results += self._patterns.analyze(text=lay.prose, language="en", entities=self._prose_entities)
            results += self._names(lay.prose)
        kept = sorted((r for r in results if self._keep(r, lay)), key=lambda r: (r.start, -(r.end - r.start)))
        hits: list[PiiHit] = []
        for r in kept:
            if hits and r.start < hits[-1].end:
                if r.entity_type == hits[-1].entity and r.end > hits[-1].end:  # one entity found in two parts
                    hits[-1] = PiiHit(r.entity_type, hits[-1].start, r.end)
                continue
            hits.append(PiiHit(r.entity_type, r.start, r.end))
        return tuple(hits)

    def _names(self, prose: str) -> list[RecognizerResult]:
        """PERSON: words a phrase introduces as a name and, in NER mode, the gazetteer's names (`names.
        name_candidates`) and NER's names holding an ambiguous one."""
        if "PERSON" not in self.settings.ner_entities:
            return []
        technical = self.settings.technical_terms
        found = introduced(prose, self._introducers, self._english, technical, self._gazetteer)
        out = [_person(s, e, INTRODUCED) for s, e in found]
        if self.mode == "ner":  # the gazetteer needs the pipeline's English word list
            names, ambiguous = name_candidates(prose, self._gazetteer, self._english, technical, found)
            out += [_person(s, e, GAZETTEER) for s, e in names]
            out += ner_names(self._nlp, prose, ambiguous, self._english, self._ner_labels, self._ner_score)
        return out

    def redact(self, text: str, vault: Vault) -> tuple[str, list[PiiHit]]:
        """`text` with each PII entity replaced by its stable placeholder from `vault`."""
        hits = self.analyze(text)
        return replace_hits(text, hits, vault, self.labels), hits


def entity_labels(settings: PiiSettings) -> dict[str, str]:
    """Placeholder label per entity the policy redacts (`<EMAIL_1>` for EMAIL_ADDRESS)."""
    return {**settings.pattern_entities, **settings.ner_entities}


def replace_hits(text: str, hits: list[PiiHit], vault: Vault, labels: dict[str, str]) -> str:
    """`text` with each of `hits` (sorted, non-overlapping: `analyze`'s) replaced by its placeholder from `vault`,
    minted in reading order so <EMAIL_1> is the first email. A splice: no anonymizer engine needed for that."""
    parts, at = [], 0
    for h in hits:
        parts += [text[at : h.start], vault.placeholder(labels[h.entity], text[h.start : h.end])]
        at = h.end
    return "".join(parts) + text[at:] if hits else text
