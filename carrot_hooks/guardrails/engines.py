"""The detectors for the current guardrail policy, rebuilt when policy/guardrails.yaml changes."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from ..config import Watched
from .output import OutputScanner
from .pii_process import PiiProcesses, RemoteRedactor, pii_processes
from .policy import PolicyScanner
from .settings import GuardrailPolicy, watched_policy

log = logging.getLogger("carrot.guardrails.pii")


@dataclass(frozen=True)
class Detectors:
    """Everything built from one version of the policy."""

    policy: GuardrailPolicy
    prompt_policy: PolicyScanner
    output: OutputScanner


class Engines:
    """The detectors are rebuilt on every policy change; the PII redactor's pipeline lives in the PII processes,
    which rebuild it when `pii:` changes."""

    def __init__(self, watched: Watched[GuardrailPolicy]):
        self.watched = watched
        self._detectors = self._build(watched.get())
        self.pii_processes = PiiProcesses(pii_processes())
        self._pii = RemoteRedactor(watched.get().pii, self.pii_processes)
        self._ready_for = None  # the `pii:` settings object the processes were last built for

    @staticmethod
    def _build(policy: GuardrailPolicy) -> Detectors:
        return Detectors(policy, PolicyScanner(policy), OutputScanner(policy))

    def detectors(self) -> Detectors:
        """Detectors for the policy now in force."""
        policy = self.watched.get()
        if policy is not self._detectors.policy:
            self._detectors = self._build(policy)
        return self._detectors

    def pii(self) -> RemoteRedactor:
        """The PII redactor for the `pii:` settings in force, the PII processes built for them (started at first
        use, rebuilt after an edit of `pii:`: blocks until they are)."""
        settings = self.watched.get().pii
        mode = self.pii_processes.build(settings)
        if mode is not None:
            log.warning("PII analysis in %d processes, mode %s", self.pii_processes.count, mode)
        if settings is not self._pii.settings and settings != self._pii.settings:
            self._pii = RemoteRedactor(settings, self.pii_processes)
        self._ready_for = settings
        return self._pii

    def pii_if_built(self) -> RemoteRedactor | None:
        """The PII redactor when the PII processes are built for the `pii:` settings in force, else None."""
        return self._pii if self.watched.get().pii is self._ready_for else None


@functools.cache
def shared_engines() -> Engines:
    """The process-wide engines over policy/guardrails.yaml (shared by all guardrail hooks)."""
    return Engines(watched_policy())


async def in_thread(timeout_s: float, fn, *args):
    """`fn(*args)` in a worker thread, awaited for at most `timeout_s` (then TimeoutError; the thread may
    go on). `asyncio.timeout`: no task of its own, unlike `wait_for`."""
    async with asyncio.timeout(timeout_s):
        return await asyncio.to_thread(fn, *args)
