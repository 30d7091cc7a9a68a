"""Secret + dangerous-command scan of answer text with the actions the request's risk level sets."""

from __future__ import annotations

from .commands import CommandScanner
from .rules import SEVERITY, Finding, RuleAction
from .secrets import SecretScanner
from .settings import GuardrailPolicy, RiskSettings


class OutputScanner:
    """Both output detectors; `scan` returns findings carrying their effective action."""

    def __init__(self, policy: GuardrailPolicy):
        self.secrets = SecretScanner(policy)
        self.commands = CommandScanner(policy)
        self.secret_ids = frozenset(r.id for r in self.secrets.rules.rules)
        self._hold: dict[RiskSettings, tuple[str, ...]] = {}  # per risk level; built on first use

    def secret_action(self, action: RuleAction | None, risk: RiskSettings) -> RuleAction:
        """A secret rule's action at this risk: `block` stays, everything else follows `risk.secrets`."""
        return "block" if action == "block" else risk.secrets

    def command_action(self, action: RuleAction | None, risk: RiskSettings) -> RuleAction:
        """A command rule's action at this risk: its own, raised to `risk.min_command_action`."""
        action = action or self.commands.rules.default_action
        return action if SEVERITY[action] >= SEVERITY[risk.min_command_action] else risk.min_command_action

    def hold_keywords(self, risk: RiskSettings) -> tuple[str, ...]:
        """Keywords of the rules that change text at this risk: a stream holds back only for these.

        A flag only annotates the end of the answer, so text that can only be flagged need not wait.
        """
        if risk not in self._hold:
            self._hold[risk] = self._changing_keywords(risk)
        return self._hold[risk]

    def context_chars(self, risk: RiskSettings) -> int:
        """The most characters a rule that changes text at this risk reads around a match."""
        return max((r.context_chars for r in self._changing(risk)), default=0)

    def _changing(self, risk: RiskSettings) -> list:
        changing = [r for r in self.secrets.rules.rules if self.secret_action(r.action, risk) != "flag"]
        return changing + [r for r in self.commands.rules.rules if self.command_action(r.action, risk) != "flag"]

    def _changing_keywords(self, risk: RiskSettings) -> tuple[str, ...]:
        return tuple(sorted({k for r in self._changing(risk) for k in r.keywords}))

    def scan(self, text: str, risk: RiskSettings) -> list[Finding]:
        """Findings in `text`: secrets act per `risk.secrets` (or block), commands at least `risk.min_command_action`."""
        out = [Finding(f.rule_id, f.start, f.end, self.secret_action(f.action, risk), f.description)
               for f in self.secrets.scan(text)]
        out += [Finding(f.rule_id, f.start, f.end, self.command_action(f.action, risk), f.description)
                for f in self.commands.scan(text)]
        return sorted(out, key=lambda f: f.start)
