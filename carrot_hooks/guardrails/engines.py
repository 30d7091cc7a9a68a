"""The detectors for the current guardrail policy, rebuilt when policy/guardrails.yaml changes."""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass

from ..config import Watched
from .output import OutputScanner
from .pii import PiiRedactor
from .policy import PolicyScanner
from .settings import GuardrailPolicy, PiiSettings, watched_policy


@dataclass(frozen=True)
class Detectors:
    """Everything built from one version of the policy."""

    policy: GuardrailPolicy
    prompt_policy: PolicyScanner
    output: OutputScanner


class Engines:
    """Cheap detectors are rebuilt on every policy change; the PII redactor only when `pii:` changes."""

    def __init__(self, watched: Watched[GuardrailPolicy]):
        self.watched = watched
        self._lock = threading.Lock()
        self._detectors = self._build(watched.get())
        self._pii: tuple[PiiSettings, PiiRedactor] | None = None  # one object: read without the lock

    @staticmethod
    def _build(policy: GuardrailPolicy) -> Detectors:
        return Detectors(policy, PolicyScanner(policy), OutputScanner(policy))

    def detectors(self) -> Detectors:
        """Detectors for the policy now in force."""
        policy = self.watched.get()
        if policy is not self._detectors.policy:
            self._detectors = self._build(policy)
        return self._detectors

    def pii(self) -> PiiRedactor:
        """The PII redactor for the current `pii:` settings (loads spaCy on first use)."""
        settings = self.watched.get().pii
        with self._lock:
            if self._pii is None or settings != self._pii[0]:
                self._pii = (settings, PiiRedactor(settings))
            elif settings is not self._pii[0]:  # an equal copy from a reload: keep the redactor, track the copy
                self._pii = (settings, self._pii[1])
            return self._pii[1]

    def pii_if_built(self) -> PiiRedactor | None:
        """The PII redactor when it is built for the `pii:` settings in force, else None (nothing built here)."""
        built = self._pii
        return built[1] if built is not None and built[0] is self.watched.get().pii else None


@functools.cache
def shared_engines() -> Engines:
    """The process-wide engines over policy/guardrails.yaml (shared by all guardrail hooks)."""
    return Engines(watched_policy())


async def in_thread(timeout_s: float, fn, *args):
    """`fn(*args)` in a worker thread, awaited for at most `timeout_s` (then TimeoutError; the thread may
    go on). `asyncio.timeout`: no task of its own, unlike `wait_for`."""
    async with asyncio.timeout(timeout_s):
        return await asyncio.to_thread(fn, *args)
