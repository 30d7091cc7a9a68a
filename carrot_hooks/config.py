"""Typed YAML policy files: parsed once, validated, hot-reloaded by mtime."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger("carrot.config")
M = TypeVar("M", bound=BaseModel)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: 5x faster on big rule files


class Strict(BaseModel):
    """Base of every policy model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A policy file that cannot be used; the message names file, key and bad value."""


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def policy_dir() -> Path:
    """Folder holding the policy YAML files (`CARROT_POLICY_DIR`, default the project's `policy/`)."""
    return Path(os.environ.get("CARROT_POLICY_DIR") or PROJECT_ROOT / "policy").resolve()


def _describe(path: Path, err: ValidationError, raw: object) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        parts.append(f"{path}: {key}{_item_id(raw, e['loc'])}: {e['msg']} (got {e.get('input')!r:.80})")
    return "; ".join(parts)


def _item_id(raw: object, loc: tuple) -> str:
    """` (id 'large-prompt')` when the error sits inside a list item that has an `id`, e.g. a rule."""
    if len(loc) >= 2 and isinstance(raw, dict) and isinstance(loc[1], int):
        items = raw.get(loc[0])
        if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
            ident = items[loc[1]].get("id")
            if isinstance(ident, str):
                return f" (id {ident!r:.60})"
    return ""


def load_yaml(path: Path) -> object:
    """Parse `path` as YAML, raising ConfigError naming the file and what is wrong."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_LOADER)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None


def load_model(path: Path, model: type[M]) -> M:
    """Parse `path` as YAML into `model`, raising ConfigError naming file, key and value."""
    raw = load_yaml(path)
    try:
        return model.model_validate(raw if raw is not None else {}, context={"path": path})
    except ValidationError as e:
        raise ConfigError(_describe(path, e, raw)) from None


def file_version(path: Path) -> str:
    """A short content hash naming one version of a policy file (shown in `x-carrot-policy`)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "unreadable"


class Watched(Generic[M]):
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
        value = load_model(self.path, self.model)
        problems = self.check(value) if self.check else []
        if problems:
            raise ConfigError("; ".join(f"{self.path}: {p}" for p in problems))
        self.version = file_version(self.path)
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
