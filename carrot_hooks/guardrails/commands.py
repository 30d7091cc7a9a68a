"""Dangerous shell/SQL/infra commands in model output, code blocks and tool-call arguments."""

from __future__ import annotations

from .rules import Finding, RuleSet
from .settings import GuardrailPolicy


class CommandScanner:
    """The `commands.rules` of the policy; each rule carries its own action (flag/redact/block)."""

    def __init__(self, policy: GuardrailPolicy):
        self.rules = RuleSet(policy.commands.rules, "flag")

    def scan(self, text: str) -> list[Finding]:
        """Dangerous-command findings in `text`."""
        return self.rules.scan(text, filter_values=False)
