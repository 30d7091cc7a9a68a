"""Secret detection: the maintained Betterleaks and Kingfisher rules (generated data) plus our own rules from the policy."""

from __future__ import annotations

from .rules import Finding, RuleSet
from .settings import GuardrailPolicy, maintained_rules


class SecretScanner:
    """The `secrets.rules` of the policy (ours + the maintained set) with the placeholder-shape filter."""

    def __init__(self, policy: GuardrailPolicy):
        shapes, rules = policy.secret_placeholders, policy.secrets.rules
        if policy.secrets.maintained:
            maintained = maintained_rules()
            shapes = shapes.merged(maintained.placeholders)
            provider = {r.id for r in maintained.rules}
            rules = sorted(rules, key=lambda r: r.id not in provider)  # a provider's rule wins a tie with a generic one
        self.rules = RuleSet(rules, "redact", shapes)

    def scan(self, text: str) -> list[Finding]:
        """Secret findings in `text` (positions only; the value is never copied)."""
        return self.rules.scan(text)
