"""What the three guardrails share: LiteLLM's dispatch reads the request's `guardrails` field first."""

from __future__ import annotations

from litellm.integrations.custom_guardrail import CustomGuardrail

from ..fields import check_field


class CarrotGuardrail(CustomGuardrail):
    """LiteLLM decides whether a guardrail runs from the request's `guardrails` field (which it may have moved
    into the metadata), unpacked unchecked (a number was a 500) before any hook of ours: a malformed one is a
    400 naming it."""

    def should_run_guardrail(self, data, event_type) -> bool:
        sent = (data.get("proxy_server_request") or {}).get("body")  # as the client sent it: named by its place
        for within, where in (("", sent), ("metadata", (sent or {}).get("metadata")), ("", data),
                              ("", data.get("metadata")), ("", data.get("litellm_metadata"))):
            if isinstance(where, dict):
                check_field(where, "guardrails", within)
        return super().should_run_guardrail(data, event_type)
