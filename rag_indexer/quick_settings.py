"""The rag policy without PyYAML and pydantic (about 80 ms CPU of imports a one-off `rag-indexer query` skips):
a JSON snapshot of the validated settings, saved by `settings.load_settings` and keyed by the policy file's
bytes, the source of the code that validates it and the versions of pydantic and PyYAML; where the store and
the models are.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from carrot_common import paths
from carrot_common.paths import policy_dir, state_dir

from .embedding import EmbeddingSpec

_HERE = Path(__file__).resolve().parent
_COMMON = Path(paths.__file__).resolve().parent
# every project file that importing the validating code (rag_indexer.settings) loads: tests/test_rag_cli.py
# checks that this list is whole
_VALIDATING = (*(_HERE / f for f in ("__init__.py", "settings.py", "chunk.py", "quick_settings.py", "embedding.py")),
               *(_COMMON / f for f in ("__init__.py", "config.py", "errors.py", "paths.py")))
_LIBRARIES = ("pydantic", "PyYAML")  # pydantic pins its pydantic-core; importlib.metadata: psycopg imports it too


class View(dict):
    """Validated settings as saved: fields by attribute (`s.retrieval.top_k`; a field named like a dict method,
    e.g. `items`, is the field), mappings as dicts."""

    def __getattribute__(self, name: str):
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            return object.__getattribute__(self, name)


def policy_file(path: Path | None) -> Path:
    """`path`, or the policy dir's `rag.yaml`."""
    return Path(path) if path is not None else policy_dir() / "rag.yaml"


def policy_bytes(path: Path | None, read: Callable[[Path], bytes] = Path.read_bytes) -> bytes | None:
    """The policy file's bytes as `read` reads them; None when no path is given and the policy dir has no
    `rag.yaml` (the defaults apply)."""
    file = policy_file(path)
    return read(file) if path is not None or file.exists() else None


def _snapshot_file(policy: Path | None) -> Path:
    """Where the settings validated from `policy` are saved (one file per policy path)."""
    where = hashlib.sha256(str(policy_file(policy).resolve()).encode()).hexdigest()[:16]
    return state_dir() / "cache" / f"rag-settings-{where}.json"


def _key(data: bytes | None) -> str:
    """The key of settings validated from `data` (None: the defaults) by this code and these libraries."""
    def installed(name: str) -> bytes:
        try:
            return version(name).encode()
        except PackageNotFoundError:
            return b"<none>"

    h = hashlib.sha256()
    for part in (b"<none>" if data is None else data, *(f.read_bytes() for f in _VALIDATING),
                 *map(installed, _LIBRARIES)):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def load_snapshot(policy: Path | None) -> View | None:
    """The saved settings for `policy` as it is now, else None (never saved, the file or the code changed, or
    the file cannot be read: the validating load reports that)."""
    try:
        key = _key(policy_bytes(policy))
        saved = json.loads(_snapshot_file(policy).read_text(), object_hook=View)
    except (OSError, ValueError):
        return None
    return saved.settings if isinstance(saved, View) and saved.get("key") == key else None


def save_snapshot(policy: Path | None, data: bytes | None, settings: dict) -> None:
    """Save `settings` (`model_dump(mode="json")`) validated from `data`, the bytes of `policy` (None: the
    defaults, no file)."""
    path = _snapshot_file(policy)
    try:
        key = _key(data)
        if json.loads(path.read_text()).get("key") == key:
            return
    except (OSError, ValueError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "settings": settings}))
        tmp.replace(path)
    except OSError:  # a read-only state dir: queries validate the policy every time
        pass


def embedding_spec(settings, for_query: bool = True) -> EmbeddingSpec:
    cfg = settings.embedding
    return EmbeddingSpec(
        model=cfg.model, models_dir=state_dir() / "models", allow_download=cfg.allow_download,
        threads=1 if for_query else cfg.index_threads,  # a query is one model run
        run_threads=cfg.query_threads if for_query else 1,
        max_tokens=cfg.query_max_tokens if for_query else None,
        int8=cfg.query_int8 and for_query,
    )


def store_url(settings) -> str:
    """The external store named by the env var, else the embedded server (started if needed)."""
    url = os.environ.get(settings.store.url_env)
    if url:
        return url
    from .embedded import ensure_server

    return ensure_server(state_dir())
