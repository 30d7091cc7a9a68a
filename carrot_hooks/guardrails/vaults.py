"""The placeholder vaults of one request: PII (carrot-pii, egress) and secrets (egress).

They live on the request context, which every attempt of a request and the output guardrail share
(a request without the gateway's context keeps them in its metadata).
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import get_context
from .answers import UNRESTORED
from .pii import Vault
from .rules import Finding

PII = "pii"
SECRETS = "secrets"
_WHAT = {PII: "personal data the gateway redacted before the model saw it",
         SECRETS: "a secret the gateway redacted for the external model"}


def _holder(data: dict) -> dict:
    ctx = get_context(data)
    return ctx.vaults if ctx is not None else data.setdefault("metadata", {}).setdefault("carrot_vaults", {})


def vault(data: dict, kind: str) -> Vault:
    """The request's vault of `kind`, created on first use."""
    holder = _holder(data)
    if not isinstance(holder.get(kind), Vault):
        holder[kind] = Vault()
    return holder[kind]


def store(data: dict, kind: str, new: Vault) -> None:
    """Make `new` the request's vault of `kind` (after a redaction into a copy succeeded)."""
    _holder(data)[kind] = new


def restorer(data: dict, kinds: tuple[str, ...]) -> Callable[[str], str]:
    """A function giving the client back the values behind this request's placeholders of `kinds`."""
    holder = _holder(data)

    def restore(text: str) -> str:  # looked up per call: an attempt may fill a vault after the stream began
        for kind in kinds:
            v = holder.get(kind)
            if isinstance(v, Vault):
                text = v.restore(text)
        return text

    return restore


def withheld(data: dict, level: str, restoring: dict[str, tuple[str, ...]]) -> Callable[[str], list[Finding]]:
    """A function giving a block finding for each of this request's placeholders in a text that risk `level`
    does not restore (`restoring`: kind → the levels that do): in a tool call the client would write the
    placeholder where the user's value was."""
    holder = _holder(data)

    def find(text: str) -> list[Finding]:
        out = []
        for kind, levels in restoring.items():
            v = holder.get(kind)
            if level in levels or not isinstance(v, Vault):
                continue
            how = f"resend at risk level {' or '.join(levels)}, or" if levels else "resend"
            out += [Finding(UNRESTORED, 0, 0, "block", (
                f"{ph} stands for {_WHAT[kind]}, and risk level {level} does not restore {kind}: this tool call "
                f"would write {ph} where the value belongs. To proceed, {how} without that value."))
                for ph in v.known(text)]
        return out

    return find
