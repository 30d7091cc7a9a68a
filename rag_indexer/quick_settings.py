"""The rag policy without PyYAML and pydantic (about 80 ms CPU of imports a one-off `rag-indexer query` skips):
a JSON snapshot of the validated settings, saved by every validating load and keyed by the policy file's bytes
and the source of the code that validates it; where the store and the models are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from carrot_common import paths
from carrot_common.paths import policy_dir, state_dir

from .embedding import EmbeddingSpec

_HERE = Path(__file__).resolve().parent
# the code whose defaults and checks decide what a policy file validates to
_VALIDATING = (_HERE / "settings.py", _HERE / "chunk.py", Path(paths.__file__).resolve().with_name("config.py"))


class View(dict):
    """Validated settings as saved: fields by attribute (`s.retrieval.top_k`), mappings as dicts."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def policy_file(path: Path | None) -> Path:
    """`path`, or the policy dir's `rag.yaml`."""
    return Path(path) if path is not None else policy_dir() / "rag.yaml"


def _snapshot(policy: Path | None) -> tuple[Path, str]:
    """Where the settings validated from `policy` are saved (one file per policy path), and the key of the
    policy file as it is now and of the code that validates it."""
    file = policy_file(policy).resolve()
    h = hashlib.sha256()
    for f in (file, *_VALIDATING):
        h.update(f.read_bytes() if f.is_file() else b"<none>")
        h.update(b"\0")
    where = hashlib.sha256(str(file).encode()).hexdigest()[:16]
    return state_dir() / "cache" / f"rag-settings-{where}.json", h.hexdigest()


def load_snapshot(policy: Path | None) -> View | None:
    """The saved settings for `policy` as it is now, else None (never saved, or the file or code changed)."""
    path, key = _snapshot(policy)
    try:
        saved = json.loads(path.read_text(), object_hook=View)
    except (OSError, ValueError):
        return None
    return saved.settings if isinstance(saved, View) and saved.get("key") == key else None


def save_snapshot(policy: Path | None, settings: dict) -> None:
    """Save validated settings (`model_dump(mode="json")`) for `policy` as it is now."""
    path, key = _snapshot(policy)
    try:
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
        threads=cfg.query_threads if for_query else cfg.index_threads,
        max_tokens=cfg.query_max_tokens if for_query else None,
    )


def store_url(settings) -> str:
    """The external store named by the env var, else the embedded server (started if needed)."""
    url = os.environ.get(settings.store.url_env)
    if url:
        return url
    from .embedded import ensure_server

    return ensure_server(state_dir())
