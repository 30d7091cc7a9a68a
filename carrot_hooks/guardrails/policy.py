"""Moderation/policy regex list on the prompt (each rule: id + block|flag)."""

from __future__ import annotations

from .rules import Finding, RuleSet
from .settings import GuardrailPolicy


class PolicyScanner:
    """`policy_rules` of the guardrail policy over prompt text."""

    def __init__(self, policy: GuardrailPolicy):
        self.rules = RuleSet(policy.policy_rules, "block")

    def scan(self, text: str) -> list[Finding]:
        """Policy findings (block or flag) in `text`."""
        return self.rules.scan(text, filter_values=False)
