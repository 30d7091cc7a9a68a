"""Admin-only request overrides for evaluation: `X-Carrot-Prompt-Pack: chat@v2` runs a request with a pack
version that is not (yet) in policy/routing.yaml, so `carrot-eval` can measure it before it goes live."""

from __future__ import annotations

import re

from . import litellm_compat as compat
from .config import ConfigError
from .errors import GatewayError
from .prompts import PackStore

PACK_HEADER = "X-Carrot-Prompt-Pack"
_PACK = re.compile(r"^[a-z0-9_]+@v[0-9]+$")


def is_admin(user_api_key_dict) -> bool:
    """The master key (LiteLLM's proxy admin) or a key whose metadata says `carrot_admin: true`."""
    meta = user_api_key_dict.metadata if isinstance(user_api_key_dict.metadata, dict) else {}
    return compat.is_proxy_admin(user_api_key_dict) or meta.get("carrot_admin") is True


def pack_override(headers: dict[str, str], user_api_key_dict, packs: PackStore) -> str | None:
    """The pack named by the override header (checked to exist), None without it; 403 for a non-admin key."""
    ref = headers.get(PACK_HEADER.lower(), "").strip()
    if not ref:
        return None
    if not is_admin(user_api_key_dict):
        raise GatewayError(403, f"Header {PACK_HEADER} is accepted only from an admin key (the master key or a key "
                           "with metadata carrot_admin: true)", param=PACK_HEADER, code="admin_only_header")
    if not _PACK.match(ref):
        raise GatewayError(400, f"Invalid {PACK_HEADER} header: expected a pack version like chat@v2",
                           param=PACK_HEADER)
    try:
        packs.get(ref)
    except ConfigError:
        raise GatewayError(400, f"Invalid {PACK_HEADER} header: no prompt pack {ref} in the prompts folder",
                           param=PACK_HEADER) from None
    return ref
