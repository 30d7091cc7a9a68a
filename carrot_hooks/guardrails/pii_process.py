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
from collections.abc import Callable

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
        self.built: PiiSettings | None = None  # the settings every child has built its redactor for

    def build(self, settings: PiiSettings) -> str | None:
        """Every child's redactor built for `settings`, all at once, before any caller uses them: at start-up the
        children start (a failure stops start-up); after a policy edit each is taken when free and rebuilt.
        The redaction mode, or None when they were built for equal settings already."""
        with self._lock:
            if self.built is settings or self.built == settings:
                return None
            fresh = self.built is None
            children = [Child(MODULE) for _ in range(self.count)] if fresh else \
                [self._idle.get() for _ in range(self.count)]
            try:
                for c in children:
                    c.send("warm", None, settings)
                modes = [c.answer() for c in children]
            except BaseException:
                if fresh:
                    for c in children:
                        c.close()
                    raise
                for c in children:
                    self._idle.put(c)
                raise
            for c in children:
                self._idle.put(c)
            self.built = settings
            return modes[0]

    def ask(self, op: str, arg, settings: PiiSettings):
        """`op` in a free child under `settings`. ChildError for what the child reports; ConnectionError when it
        died or hung (a replacement starts), TimeoutError when none was free in WAIT_S."""
        child = self._free()
        try:
            answer = child.ask(op, arg, settings)
        except ChildError:
            self._idle.put(child)
            raise
        except BaseException as e:  # died or hung (TimeoutError is an OSError), or the exchange broke: not reused
            self._replace(child)
            raise ConnectionError(f"PII process {child.proc.pid} ended (code {child.proc.returncode}): "
                                  f"{e or type(e).__name__}; a replacement is starting") from e
        self._idle.put(child)
        return answer

    def _free(self) -> Child:
        """A free child; one that died while idle (e.g. killed for memory) is replaced and another taken."""
        while True:
            try:
                child = self._idle.get(timeout=WAIT_S)
            except queue.Empty:
                raise TimeoutError(f"no PII process free in {WAIT_S:.0f} s (all busy or being replaced)") from None
            if child.proc.poll() is None:
                return child
            self._replace(child)

    def _replace(self, child: Child) -> None:
        child.close()
        threading.Thread(target=self._start_one, name="carrot-pii-replace", daemon=True).start()

    def _start_one(self) -> None:
        """A new child, built for the current settings, into the idle queue; tried again every RETRY_AFTER_S
        while it fails to start."""
        while True:
            child = None
            try:
                child = Child(MODULE)
                child.ask("warm", None, self.built)
            except Exception as e:  # noqa: BLE001 - any failure to start: try again, the pool must not shrink
                log.error("a new PII process failed to start (%s: %s); trying again in %.0f s",
                          type(e).__name__, e, RETRY_AFTER_S)
                if child is not None:
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
        return list(self._memo.cached(text, lambda t: self._processes.ask("analyze", [t], self.settings)[0]))

    def prefetch(self, walk: Callable[[Callable[[str], str]], object]) -> None:
        """Analyse in one exchange the texts `walk(fn)` calls `fn` on (a request's, before they are redacted one by
        one) that are not in the memo: an agent's request holds dozens, an exchange each cost 0.1 ms of the proxy's
        CPU."""
        texts: list[str] = []
        walk(lambda text: texts.append(text) or text)
        todo = [t for t in dict.fromkeys(texts) if t.strip() and self._memo.get(self._memo.key(t)) is None]
        if todo:
            for text, hits in zip(todo, self._processes.ask("analyze", todo, self.settings), strict=True):
                self._memo.put(self._memo.key(text), hits)

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
        if op == "analyze":  # a list of texts: their hits, in order
            redactor = self.redactor()
            return [tuple(redactor.analyze(text)) for text in arg]
        if op == "warm":
            return self.redactor().mode
        raise ValueError(f"unknown operation {op!r}")


if __name__ == "__main__":
    serve(int(sys.argv[1]), _Analyzer(), "pii")
