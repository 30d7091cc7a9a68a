"""Guardrails of the Carrot Coder Gateway: one detector per module, LiteLLM wrappers in `hooks`.

policy (prompt regex list), allowlist (task types per caller), pii (code-aware Presidio
redaction + restore), secrets and commands (answer scanners), stream (holdback window),
all configured from policy/guardrails.yaml (settings) and counted in metrics.
"""
