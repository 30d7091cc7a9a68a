"""Which task types a caller may use: key/team metadata, then per-tenant YAML, then the default."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .settings import TaskAllowlist

METADATA_KEY = "carrot_allowed_tasks"


def allowed_tasks(
    allow: TaskAllowlist, tenant: str, key_metadata: Mapping | None, team_metadata: Mapping | None
) -> tuple[tuple[str, ...], str]:
    """The allowed task types and where that list came from (for the error message)."""
    for source, meta in (("key metadata", key_metadata), ("team metadata", team_metadata)):
        listed = (meta or {}).get(METADATA_KEY)
        if isinstance(listed, Sequence) and not isinstance(listed, str):
            return tuple(str(t) for t in listed), source
    if tenant in allow.tenants:
        return allow.tenants[tenant], f"task_allowlist.tenants.{tenant}"
    return allow.default, "task_allowlist.default"
