"""Typed YAML policy files: parsed once, validated, hot-reloaded by mtime."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from carrot_common.config import ConfigError, Strict, load_model, load_yaml, read_file
from carrot_common.paths import policy_dir, project_root

__all__ = ["PROJECT_ROOT", "ConfigError", "Strict", "Watched", "file_version", "load_model", "load_yaml", "policy_dir"]
PROJECT_ROOT = project_root()

log = logging.getLogger("carrot.config")


def file_version(path: Path, data: bytes | None = None) -> str:
    """A short content hash naming one version of a policy file (shown in `x-carrot-policy`), of `data`
    (its bytes already read) when given."""
    try:
        return hashlib.sha256(Path(path).read_bytes() if data is None else data).hexdigest()[:12]
    except OSError:
        return "unreadable"


class Watched[M: BaseModel]:
    """The last valid parse of a policy file, re-read when its mtime changes.

    A broken edit is logged with file, key and value while the last valid
    version stays in force; `version` is the content hash of the version in force. `check` adds semantic problems a schema cannot see
    (e.g. a model alias the proxy does not serve). The file is stat'ed at most
    once per `interval`.
    """

    def __init__(self, path: Path, model: type[M], interval: float = 1.0,
                 check: Callable[[M], list[str]] | None = None):
        self.path, self.model, self.interval, self.check = path, model, interval, check
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._value = self._load()  # start-up fails loudly on a bad file
        self._checked = time.monotonic()

    def _load(self) -> M:
        data = read_file(self.path)  # read once: the version names the bytes that were parsed
        value = load_model(self.path, self.model, data)
        problems = self.check(value) if self.check else []
        if problems:
            raise ConfigError("; ".join(f"{self.path}: {p}" for p in problems))
        self.version = file_version(self.path, data)
        return value

    def _stat(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size

    def get(self) -> M:
        now = time.monotonic()
        if now - self._checked >= self.interval:
            with self._lock:
                self._checked = now
                self._reload_if_changed()
        return self._value

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stat()
        except OSError as e:
            log.error("policy file %s unreadable, keeping last valid version: %s", self.path, e)
            return
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._value = self._load()
            log.warning("reloaded policy file %s", self.path)
        except ConfigError as e:
            log.error("invalid policy edit ignored, last valid version stays in force: %s", e)
