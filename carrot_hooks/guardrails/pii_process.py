"""PII analysis in child processes: spaCy's NER and Presidio's recognizers were most of the gateway's own CPU per
request, and on the proxy's GIL they held up every request it serves. Here they run on their own.

The proxy's side is `PiiProcesses` (`CARROT_PII_PROCESSES` children per gateway worker, default 2; a caller's
thread takes an idle one) and `RemoteRedactor`, which the guardrails use as they would the redactor: the proxy
keeps the placeholders and their vault, a child only finds the spans. The child is this module
(`python -P -m carrot_hooks.guardrails.pii_process FD`), holding a `PiiRedactor` for the settings it was sent.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time

from ..children import Child, ChildError, serve
from ..env import env_int
from .pii.memo import Memo
from .pii.redactor import PiiHit, PiiRedactor, entity_labels, replace_hits
from .pii.vault import Vault
from .settings import PiiSettings

log = logging.getLogger("carrot.guardrails.pii")

MODULE = "carrot_hooks.guardrails.pii_process"
RETRY_AFTER_S = 5.0  # a replacement that failed to start is tried again after this long
WAIT_S = 10.0  # a caller waits this long for a free child (all busy, or being replaced), then gives up


def pii_processes() -> int:
    """`CARROT_PII_PROCESSES`: PII processes per gateway worker (default 2); a bad value stops start-up, naming it."""
    return env_int("CARROT_PII_PROCESSES", 2, minimum=1)


class PiiProcesses:
    """The children, each answering one text at a time. One that died or hung is replaced off the request path:
    callers meanwhile use the others, or wait for a free one at most WAIT_S (their stage's timeout comes first)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._idle: queue.LifoQueue[Child] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = False

    def warm(self, settings: PiiSettings) -> str | None:
        """Start every child and load its pipeline, all at once (at proxy start-up, or on first use); a failure
        here stops start-up. The redaction mode, or None when they were started already."""
        with self._lock:
            if self._started:
                return None
            children = [Child(MODULE) for _ in range(self.count)]
            for c in children:
                c.send("warm", None, settings)
            modes = [c.answer() for c in children]
            for c in children:
                self._idle.put(c)
            self._started = True
            return modes[0]

    def ask(self, op: str, arg, settings: PiiSettings):
        """`op` in a free child under `settings`. ChildError for what the child reports; ConnectionError when it
        died or hung (a replacement starts), TimeoutError when none was free in WAIT_S."""
        if not self._started:
            self.warm(settings)
        try:
            child = self._idle.get(timeout=WAIT_S)
        except queue.Empty:
            raise TimeoutError(f"no PII process free in {WAIT_S:.0f} s (all busy or being replaced)") from None
        try:
            answer = child.ask(op, arg, settings)
        except (EOFError, OSError) as e:  # died or hung (TimeoutError is an OSError): never asked again
            child.close()
            threading.Thread(target=self._replace, args=(settings,), name="carrot-pii-replace", daemon=True).start()
            raise ConnectionError(f"PII process {child.proc.pid} ended (code {child.proc.returncode}): "
                                  f"{e or type(e).__name__}; a replacement is starting") from e
        except ChildError:
            self._idle.put(child)
            raise
        self._idle.put(child)
        return answer

    def _replace(self, settings: PiiSettings) -> None:
        """A new child, loaded, into the idle queue; tried again every RETRY_AFTER_S while it fails to start."""
        while True:
            child = Child(MODULE)
            try:
                child.ask("warm", None, settings)
            except (ChildError, EOFError, OSError) as e:
                log.error("a new PII process failed to start (%s: %s); trying again in %.0f s",
                          type(e).__name__, e, RETRY_AFTER_S)
                child.close()
                time.sleep(RETRY_AFTER_S)  # a back-off between start attempts
                continue
            self._idle.put(child)
            return


class RemoteRedactor:
    """The redactor for one version of the `pii:` settings, its analysis done by the PII processes. Results
    are memoized here too: an agent resends its whole conversation every turn."""

    def __init__(self, settings: PiiSettings, processes: PiiProcesses) -> None:
        self.settings = settings
        self.labels = entity_labels(settings)
        self._processes = processes
        self._memo = Memo(2048)

    def analyze(self, text: str) -> list[PiiHit]:
        """PII entities in `text` (`PiiRedactor.analyze`, in a child)."""
        if not text.strip():
            return []
        key = self._memo.key(text)
        hits = self._memo.get(key)
        if hits is None:
            hits = self._processes.ask("analyze", text, self.settings)
            self._memo.put(key, hits)
        return list(hits)

    def redact(self, text: str, vault: Vault) -> tuple[str, list[PiiHit]]:
        """`text` with each PII entity replaced by its stable placeholder from `vault`."""
        hits = self.analyze(text)
        return replace_hits(text, hits, vault, self.labels), hits


class _Analyzer:
    """The child's redactor, rebuilt when the parent sends settings that differ from the ones it was built for."""

    def __init__(self) -> None:
        self.settings: PiiSettings | None = None
        self._redactor: PiiRedactor | None = None

    def redactor(self) -> PiiRedactor:
        if self._redactor is None or self._redactor.settings != self.settings:
            self._redactor = PiiRedactor(self.settings)
        return self._redactor

    def run(self, op: str, arg):
        if op == "analyze":
            return tuple(self.redactor().analyze(arg))
        if op == "warm":
            return self.redactor().mode
        raise ValueError(f"unknown operation {op!r}")


if __name__ == "__main__":
    serve(int(sys.argv[1]), _Analyzer(), "pii")
