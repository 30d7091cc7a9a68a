"""Secret detection on model output: provider tokens, keys, JWTs, passwords, high-entropy values."""

from __future__ import annotations

from .rules import Finding, RuleSet
from .settings import GuardrailPolicy


class SecretScanner:
    """The `secrets.rules` of the policy with the placeholder filter (`xxxx`, `EXAMPLE`, `${VAR}`)."""

    def __init__(self, policy: GuardrailPolicy):
        self.rules = RuleSet(policy.secrets.rules, "redact", policy.secret_placeholders)

    def scan(self, text: str) -> list[Finding]:
        """Secret findings in `text` (positions only; the value is never copied)."""
        return self.rules.scan(text)
