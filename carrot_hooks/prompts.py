"""Prompt packs: versioned system prompts in `prompts/{name}@v{N}.md`, injected as the first system message."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import PROJECT_ROOT, ConfigError


@dataclass(frozen=True)
class PromptPack:
    """One pack file: `name@vN`, its front matter and the prompt body."""

    ref: str
    meta: dict
    body: str


def prompts_dir() -> Path:
    """Folder of pack files (`CARROT_PROMPTS_DIR`, default the project's `prompts/`)."""
    return Path(os.environ.get("CARROT_PROMPTS_DIR") or PROJECT_ROOT / "prompts").resolve()


def load_pack(path: Path) -> PromptPack:
    """Parse a pack file: optional `---` YAML front matter, then the body."""
    text = path.read_text(encoding="utf-8")
    meta: dict = {}
    if text.startswith("---\n"):
        head, sep, rest = text[4:].partition("\n---\n")
        if not sep:
            raise ConfigError(f"{path}: front matter opened with '---' is never closed")
        try:
            meta = yaml.safe_load(head) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid front matter: {e}") from None
        text = rest
    body = text.strip()
    if not body:
        raise ConfigError(f"{path}: prompt pack body is empty")
    return PromptPack(ref=path.stem, meta=meta, body=body)


class PackStore:
    """Pack files by reference, re-read when a file changes (keyed by mtime and size)."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, tuple[tuple[int, int], PromptPack]] = {}

    def get(self, ref: str) -> PromptPack:
        path = self.root / f"{ref}.md"
        try:
            st = path.stat()
        except OSError:
            raise ConfigError(f"{path}: prompt pack {ref!r} named in the routing policy does not exist") from None
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(ref)
        if hit is None or hit[0] != stamp:
            hit = (stamp, load_pack(path))
            self._cache[ref] = hit
        return hit[1]


def pack_message(pack: PromptPack) -> dict:
    """The pack as a system message; it goes first, the client's messages (its own system prompt included) follow."""
    return {"role": "system", "content": pack.body}
