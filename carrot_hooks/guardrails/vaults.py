"""The placeholder vaults of one request: PII (carrot-pii, egress) and secrets (egress).

They live on the request context, which every attempt of a request and the output guardrail share
(a request without the gateway's context keeps them in its metadata).
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import get_context
from .pii import Vault

PII = "pii"
SECRETS = "secrets"


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
