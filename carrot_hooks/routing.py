"""Routing policy (policy/routing.yaml) and the rule match that picks a model alias per request."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from .config import Strict as _Strict
from .context import Risk
from .errors import GatewayError
from .rollout import Canary

_PACK = re.compile(r"^[a-z0-9_]+@v[0-9]+$")




class Match(_Strict):
    """Conditions of a rule; every condition given must hold (absent = any)."""

    task_type: list[str] | None = None
    risk: list[Risk] | None = None
    min_tokens: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    tools: bool | None = None  # true: the request carries tool definitions (agents); false: it does not


class Rule(_Strict):
    """One routing rule: when it matches, use `model`, or refuse with `refuse` (403 human review)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    when: Match = Match()
    model: str | None = None
    refuse: str | None = None
    override_client: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        if (self.model is None) == (self.refuse is None):
            raise ValueError("a rule needs exactly one of 'model' or 'refuse'")
        return self


class Task(_Strict):
    """A task type: its prompt pack (`name@vN`)."""

    pack: str = Field(pattern=_PACK.pattern)


class Tools(_Strict):
    """A request with tools routed to an alias whose deployments cannot call tools (litellm_config.yaml
    `model_info.supports_function_calling`): `drop` them (answered without, `x-carrot-tools: dropped`)
    or `refuse` it (400 naming the alias). Rules with `when: {tools: true}` route agents elsewhere first."""

    incapable: Literal["drop", "refuse"] = "refuse"
    # Tools sent to a capable alias that the guardrails cannot check: server-side ones (web search, MCP,
    # code execution: their results reach the model unseen) and freeform custom tools. `drop` sends the
    # request without them (`x-carrot-tools-dropped` names them); `refuse` answers 400 naming the first.
    unchecked: Literal["drop", "refuse"] = "refuse"


class Auxiliary(_Strict):
    """A client's housekeeping call (chat title, conversation summary), recognised by `regex`
    (case-insensitive) in its system prompt or the head of its last user message: no pack, no retrieval."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    regex: str

    @model_validator(mode="after")
    def _compiles(self) -> Auxiliary:
        try:
            _compiled(self.regex)
        except re.error as e:
            raise ValueError(f"auxiliary {self.id}: regex does not compile: {e}") from None
        return self


@functools.lru_cache(maxsize=64)
def _compiled(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.IGNORECASE)


AUX_HEAD_CHARS = 300  # how much of the last user message an auxiliary instruction is looked for in


class RoutingPolicy(_Strict):
    """The whole routing file."""

    default_task_type: str = "chat"
    default_completion_task_type: str = "editor"
    default_risk: Risk = "low"
    max_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    virtual_model_prefix: str = "carrot-"
    tasks: dict[str, Task]
    fim: dict[str, str] = {}
    tools: Tools = Tools()
    auxiliary: list[Auxiliary] = []
    rules: list[Rule] = Field(min_length=1)
    canaries: dict[str, Canary] = {}  # alias -> stable/candidate pins and the candidate's share (carrot_hooks/rollout.py)

    @model_validator(mode="after")
    def _known_tasks(self) -> RoutingPolicy:
        for key in ("default_task_type", "default_completion_task_type"):
            if getattr(self, key) not in self.tasks:
                raise ValueError(f"{key} {getattr(self, key)!r} is not one of tasks")
        for i, rule in enumerate(self.rules):
            unknown = set(rule.when.task_type or ()) - set(self.tasks)
            if unknown:
                raise ValueError(f"rules.{i} ({rule.id}): when.task_type has unknown {sorted(unknown)}")
        for alias, c in self.canaries.items():
            if "@" in alias:
                raise ValueError(f"canaries.{alias}: a canary belongs to an undated alias (pins are never re-routed)")
            if alias in self.fim and not {c.stable, c.candidate} <= set(self.fim):
                raise ValueError(f"canaries.{alias}: {alias} serves /v1/completions, so stable and candidate need "
                                 "fim entries too")
        if self.rules[-1].when != Match():
            raise ValueError(f"rules.{len(self.rules) - 1} ({self.rules[-1].id}): the last rule must match "
                             "everything (no 'when')")
        return self

    def virtual_models(self) -> dict[str, str]:
        """`carrot-editor` → `editor`, for clients that cannot send headers."""
        return {f"{self.virtual_model_prefix}{t}": t for t in self.tasks}

    def auxiliary_call(self, system_texts: Iterable[str], last_user_text: str) -> str | None:
        """The id of the auxiliary pattern this request matches, if any."""
        texts = [*system_texts, last_user_text[:AUX_HEAD_CHARS]]
        return next((a.id for a in self.auxiliary for t in texts if _compiled(a.regex).search(t)), None)

    def routing_size(self, text: str, count_tokens: Callable[[str], int]) -> int:
        """The prompt size the rules compare: exact tokens only when `text` could reach a token threshold
        (a cl100k token is at least one UTF-8 byte, so fewer bytes than every threshold is below all of them)."""
        size = len(text.encode())
        bounds = [b for r in self.rules for b in (r.when.min_tokens, r.when.max_tokens) if b is not None]
        return count_tokens(text) if bounds and size >= min(bounds) else size

    def unknown_aliases(self, known: Collection[str]) -> list[str]:
        """Problems naming each rule/fim entry that targets a model alias the proxy does not serve."""
        bad = [f"rules.{i} ({r.id}).model: unknown alias {r.model!r}" for i, r in enumerate(self.rules)
               if r.model is not None and r.model not in known]
        bad += [f"fim.{k}: unknown alias {v!r}" for k, v in self.fim.items() if v not in known]
        bad += [f"canaries.{a}.{arm}: unknown alias {getattr(c, arm)!r}" for a, c in self.canaries.items()
                for arm in ("stable", "candidate") if getattr(c, arm) not in known]
        return bad


@dataclass(frozen=True)
class Route:
    """The routing decision: which rule fired and which alias serves the request."""

    rule_id: str
    model: str


def route(
    policy: RoutingPolicy, *, task_type: str, risk: Risk, tokens: int, client_alias: str | None,
    tools: bool = False,
) -> Route:
    """First matching rule wins (the last rule matches all); a client-chosen alias stands unless
    that rule overrides clients."""
    rule = next(r for r in policy.rules if _matches(r.when, task_type, risk, tokens, tools))
    if client_alias is not None and not rule.override_client:
        return Route(rule_id="client-choice", model=client_alias)
    if rule.refuse is not None:
        raise GatewayError(403, f"Needs human review (rule {rule.id}): {rule.refuse}", code="needs_human_review")
    return Route(rule_id=rule.id, model=rule.model)  # type: ignore[arg-type]


def tools_verdict(policy: RoutingPolicy, route: Route, capable: bool) -> Literal["sent", "dropped"]:
    """What happens to the tools of a request routed to `route`: sent, dropped, or a 400 naming the alias."""
    if capable:
        return "sent"
    if policy.tools.incapable == "drop":
        return "dropped"
    raise GatewayError(400, f"Model {route.model} (rule {route.rule_id}) cannot call tools and the routing policy "
                       "refuses tool requests for it (tools.incapable: refuse): send the request without 'tools', "
                       "or route agents to a tool-capable model with a rule 'when: {tools: true}'",
                       param="tools", code="tools_not_supported")


def _matches(w: Match, task_type: str, risk: Risk, tokens: int, tools: bool) -> bool:
    return ((w.tools is None or w.tools == tools)
            and (w.task_type is None or task_type in w.task_type)
            and (w.risk is None or risk in w.risk)
            and (w.min_tokens is None or tokens >= w.min_tokens)
            and (w.max_tokens is None or tokens <= w.max_tokens))
