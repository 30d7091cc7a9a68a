"""Secret + dangerous-command scan of answer text with the actions the request's risk level sets."""

from __future__ import annotations

from .commands import CommandScanner
from .rules import SEVERITY, Finding
from .secrets import SecretScanner
from .settings import GuardrailPolicy, RiskSettings


class OutputScanner:
    """Both output detectors; `scan` returns findings carrying their effective action."""

    def __init__(self, policy: GuardrailPolicy):
        self.secrets = SecretScanner(policy)
        self.commands = CommandScanner(policy)
        self.keywords = tuple(sorted({k for r in (*policy.secrets.rules, *policy.commands.rules) for k in r.keywords}))

    def scan(self, text: str, risk: RiskSettings) -> list[Finding]:
        """Findings in `text`: secrets act per `risk.secrets` (or block), commands at least `risk.min_command_action`."""
        out = [
            f if f.action == "block" else Finding(f.rule_id, f.start, f.end, risk.secrets, f.description)
            for f in self.secrets.scan(text)
        ]
        floor = SEVERITY[risk.min_command_action]
        for f in self.commands.scan(text):
            action = f.action if SEVERITY[f.action] >= floor else risk.min_command_action
            out.append(Finding(f.rule_id, f.start, f.end, action, f.description))
        return sorted(out, key=lambda f: f.start)
