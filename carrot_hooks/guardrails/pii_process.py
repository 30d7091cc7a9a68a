"""PII analysis in child processes: spaCy's NER and Presidio's recognizers were most of the gateway's own CPU per
request, and on the proxy's GIL they held up every request it serves. Here they run on their own.

The proxy's side is `PiiProcesses` (`CARROT_PII_PROCESSES` children per gateway worker, default 2; a caller's
thread takes an idle one) and `RemoteRedactor`, which the guardrails use as they would the redactor: the proxy
keeps the placeholders and their vault, a child only finds the spans. The child is this module
(`python -P -m carrot_hooks.guardrails.pii_process FD`), holding a `PiiRedactor` for the settings it was sent.
"""

from __future__ import annotations

import logging
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
BATCH_CHARS = 64_000  # text per exchange: analysed in about 2 s at worst (bench/hostile.py), far from the hang timeout


def pii_processes() -> int:
    """`CARROT_PII_PROCESSES`: PII processes per gateway worker (default 2); a bad value stops start-up, naming it."""
    return env_int("CARROT_PII_PROCESSES", 2, minimum=1)


class _PiiChild(Child):
    def __init__(self, generation: int) -> None:
        super().__init__(MODULE)
        self.generation = generation  # the build it belongs to


class PiiProcesses:
    """The children, each answering one exchange at a time. One that died or hung is replaced off the request path:
    callers meanwhile use the others, or wait for a free one at most WAIT_S (their stage's timeout comes first).
    Each `build` (start-up, an edit of `pii:`) starts a new generation of children and retires the old one."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.built: PiiSettings | None = None  # the settings the current generation was built for
        self._generation = 0
        self._idle: list[_PiiChild] = []
        self._changed = threading.Condition()  # guards the three above; notified when a child comes free
        self._lock = threading.Lock()  # one build at a time
        self._failed_at = float("-inf")  # when a build last failed

    def build(self, settings: PiiSettings) -> str | None:
        """`count` new children built for `settings`, all at once, in place of the ones in use once every one is
        loaded (callers of `pii()` wait; a failure at start-up stops it). The redaction mode, or None when the
        children were built for equal settings already; a failed build is not tried again for RETRY_AFTER_S."""
        if self.built is settings:  # every egress request asks: no lock for the settings in force
            return None
        with self._lock:
            if self.built is settings or self.built == settings:
                return None
            if time.monotonic() - self._failed_at < RETRY_AFTER_S:
                raise ConnectionError("starting PII processes failed recently; retrying shortly")
            children: list[_PiiChild] = []
            try:
                for _ in range(self.count):  # one by one: those started before a failure are closed too
                    children.append(_PiiChild(self._generation + 1))
                for c in children:
                    c.send("warm", None, settings)
                modes = [c.answer() for c in children]
            except BaseException:
                self._failed_at = time.monotonic()
                for c in children:
                    c.close()
                raise
            with self._changed:
                self._generation += 1
                old, self._idle, self.built = self._idle, children, settings
                self._changed.notify_all()
            for c in old:  # the busy ones are closed when they come back
                c.close()
            return modes[0]

    def ask(self, op: str, arg, settings: PiiSettings):
        """`op` in a free child under `settings`. ChildError for what the child reports; ConnectionError when it
        died or hung (a replacement starts), TimeoutError when none was free in WAIT_S."""
        child = self._take()
        try:
            answer = child.ask(op, arg, settings)
        except ChildError:
            self._give(child)
            raise
        except BaseException as e:  # died or hung (TimeoutError is an OSError), or the exchange broke: not reused
            self._replace(child)
            raise ConnectionError(f"PII process {child.proc.pid} ended (code {child.proc.returncode}): "
                                  f"{e or type(e).__name__}; a replacement is starting") from e
        self._give(child)
        return answer

    def _take(self) -> _PiiChild:
        """A free child; one that died while idle (e.g. killed for memory) is replaced and another taken."""
        deadline = time.monotonic() + WAIT_S
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: self._idle, timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no PII process free in {WAIT_S:.0f} s (all busy or being replaced)")
                child = self._idle.pop()
            if child.proc.poll() is None:
                return child
            self._replace(child)

    def _give(self, child: _PiiChild) -> None:
        with self._changed:
            if child.generation == self._generation:
                self._idle.append(child)
                self._changed.notify()
                return
        child.close()  # of a generation a build retired

    def _replace(self, child: _PiiChild) -> None:
        child.close()
        threading.Thread(target=self._start_one, args=(child.generation,), name="carrot-pii-replace",
                         daemon=True).start()

    def _start_one(self, generation: int) -> None:
        """A new child of `generation`, loaded, to the free ones; tried again every RETRY_AFTER_S while it fails to
        start, until a build replaces that generation."""
        while True:
            with self._changed:
                if generation != self._generation:
                    return
                settings = self.built
            child = None
            try:
                child = _PiiChild(generation)
                child.ask("warm", None, settings)
            except Exception as e:  # noqa: BLE001 - any failure to start: try again, the pool must not shrink
                log.error("a new PII process failed to start (%s: %s); trying again in %.0f s",
                          type(e).__name__, e, RETRY_AFTER_S)
                if child is not None:
                    child.close()
                time.sleep(RETRY_AFTER_S)  # a back-off between start attempts
                continue
            self._give(child)
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
        """Analyse the texts `walk(fn)` calls `fn` on (a request's, before they are redacted one by one) that are not in
        the memo, many per exchange: an agent's request holds dozens, and an exchange each cost 0.1 ms of the proxy's
        CPU."""
        texts: list[str] = []
        walk(lambda text: texts.append(text) or text)
        keys = {t: self._memo.key(t) for t in texts if t.strip()}  # each text hashed once
        todo = [t for t, key in keys.items() if self._memo.get(key) is None]
        while todo:  # at most BATCH_CHARS an exchange (and one text at least): each well inside the hang timeout
            size = n = 0
            while n < len(todo) and (n == 0 or size + len(todo[n]) <= BATCH_CHARS):
                size, n = size + len(todo[n]), n + 1
            batch, todo = todo[:n], todo[n:]
            for text, hits in zip(batch, self._processes.ask("analyze", batch, self.settings), strict=True):
                self._memo.put(keys[text], hits)

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
