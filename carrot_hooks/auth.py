"""API-key check (LiteLLM `general_settings.custom_auth`): a missing or unknown key is 401, never upstream.

LiteLLM 1.110 without a database answers an unknown key with 400 "No connected db.". This hook
decides first: the master key and, when a database is connected, every other key go on to
LiteLLM's own checks (so DB-backed virtual keys work unchanged once DATABASE_URL is set);
tenant keys listed by SHA-256 in `policy/keys.yaml` are accepted here; anything else is 401.
"""

# No `from __future__ import annotations`: LiteLLM loads this file outside sys.modules, where
# pydantic cannot resolve postponed annotations.
import hashlib
import hmac
from collections.abc import Callable
from typing import Literal

from fastapi import Request
from pydantic import Field

from . import litellm_compat as compat
from .config import Strict, Watched, policy_dir
from .litellm_compat import (
    LiteLLMRoutes,
    ProxyErrorTypes,
    ProxyException,
    UserAPIKeyAuth,
)


class TenantKey(Strict):
    """One static key: its SHA-256 (never the key itself), the tenant it belongs to, key metadata."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str = Field(min_length=1, max_length=128)
    alias: str | None = None
    metadata: dict = Field(default_factory=dict)


class KeysPolicy(Strict):
    """The whole keys file."""

    keys: list[TenantKey] = []

    def find(self, api_key: str) -> TenantKey | None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        return next((k for k in self.keys if hmac.compare_digest(k.sha256, digest)), None)


Decision = UserAPIKeyAuth | str
# What a static tenant key may call: the routed model API and model listing.
TENANT_ROUTES = frozenset({
    "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
    "/v1/responses", "/responses", "/v1/messages", "/v1/models", "/models",
    "/v1/messages/count_tokens",  # answered by the gateway itself (CarrotGateway.count_tokens): nothing leaves
})


def unauthorized(reason: Literal["missing", "invalid"]) -> ProxyException:
    """401 naming the header; the presented key is never echoed."""
    message = ("Missing API key: send 'Authorization: Bearer <key>'" if reason == "missing"
               else "Invalid API key in the Authorization header: the key is not known to this gateway")
    return ProxyException(message=message, type=ProxyErrorTypes.auth_error, param="Authorization", code=401)


def decide(route: str, api_key: str | None, *, master_key: str | None, keys: Callable[[], KeysPolicy],
           db_connected: bool) -> Decision:
    """A tenant's identity, or the key string to hand on to LiteLLM's own checks; raises 401 otherwise.
    `keys` is read only for keys that are not the master key, so a broken keys file never locks it out."""
    api_key = (api_key or "").strip()
    if route in LiteLLMRoutes.public_routes.value or master_key is None:
        return api_key  # LiteLLM's public routes and key-less dev mode behave as before
    if not api_key:
        raise unauthorized("missing")
    if hmac.compare_digest(api_key.encode(), master_key.encode()):
        return api_key
    tenant = keys().find(api_key)
    if tenant is not None:
        if route not in TENANT_ROUTES:  # pass-through and admin routes would skip routing and guardrails
            raise ProxyException(message=f"Route {route} is not open to tenant keys (they reach the model API only)",
                                 type=ProxyErrorTypes.auth_error, param="route", code=403)
        # the hash, never the key: LiteLLM keeps a key without the sk- prefix as-is in token/api_key,
        # which end up in logs and metric labels
        return UserAPIKeyAuth(api_key=tenant.sha256, team_id=tenant.tenant, key_alias=tenant.alias,
                              metadata=dict(tenant.metadata))
    if db_connected:
        return api_key
    raise unauthorized("invalid")


_keys: Watched[KeysPolicy] | None = None


def keys_policy() -> KeysPolicy:
    """`policy/keys.yaml`, hot-reloaded; no file means no static tenant keys."""
    global _keys
    if _keys is None:
        path = policy_dir() / "keys.yaml"
        if not path.exists():
            return KeysPolicy()
        _keys = Watched(path, KeysPolicy)
    return _keys.get()


async def user_api_key_auth(request: Request, api_key: str) -> Decision:
    """The `custom_auth` entry point LiteLLM calls for every authenticated route."""
    return decide(compat.request_route(request), api_key, master_key=compat.master_key(), keys=keys_policy,
                  db_connected=compat.db_connected())
