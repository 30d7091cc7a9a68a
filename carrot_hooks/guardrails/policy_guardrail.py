"""`carrot-prompt-policy` (pre_call): the task allowlist (403) and the policy regex list (400 / flag)."""

from __future__ import annotations

from litellm.types.guardrails import GuardrailEventHooks

from ..context import Verdict, get_context
from ..errors import GatewayError
from ..messages import PROMPT_CALLS, request_texts, strings_of
from ..metrics import timed_stage
from .allowlist import allowed_tasks
from .base import CarrotGuardrail
from .engines import shared_engines
from .metrics import record
from .rules import explain


class PromptPolicyGuardrail(CarrotGuardrail):
    """Policy regex list and task allowlist on the request (pre_call)."""

    def __init__(self, **kwargs):
        super().__init__(supported_event_hooks=[GuardrailEventHooks.pre_call], **kwargs)
        self.engines = shared_engines()

    @timed_stage("guardrail_policy")
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        """Block (400) on a policy rule with action block, 403 on a task type the caller may not use."""
        if call_type not in PROMPT_CALLS:
            return data
        ctx = get_context(data)
        det = self.engines.detectors()
        if ctx is not None:
            tasks, source = allowed_tasks(
                det.policy.task_allowlist, ctx.tenant, user_api_key_dict.metadata, user_api_key_dict.team_metadata
            )
            if ctx.task_type not in tasks:
                record(ctx, Verdict("allowlist", "block", f"task type {ctx.task_type} not allowed", ("task-allowlist",)))
                raise GatewayError(
                    403,
                    f"Task type {ctx.task_type!r} is not allowed for this caller (rule task-allowlist, from {source}); "
                    f"allowed: {', '.join(tasks)}",
                    param="X-Task-Type", code="guardrail_blocked",
                )
        texts = request_texts(data, roles=("user",), skip=ctx.authored if ctx else (), tool_arguments=False)
        texts += [t for field in (ctx.extra_fields if ctx else ()) for t in strings_of(data.get(field))]
        findings = [f for text in texts for f in det.prompt_policy.scan(text)]
        blocks = [f for f in findings if f.action == "block"]
        if blocks:
            record(ctx, Verdict("policy", "block", explain("policy", blocks), tuple(dict.fromkeys(f.rule_id for f in blocks))))
            first = blocks[0]
            raise GatewayError(
                400, f"Request blocked by policy rule {first.rule_id} ({first.description})",
                param="messages", code="guardrail_blocked",
            )
        if findings:
            record(ctx, Verdict("policy", "flag", explain("policy", findings), tuple(dict.fromkeys(f.rule_id for f in findings))))
        else:
            record(ctx, Verdict("policy", "pass", "no policy rule matched"))
        return data
