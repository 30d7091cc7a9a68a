"""Bounded LRU of analysis results keyed by the text's digest (never holds the text itself)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict


class Memo:
    """Thread-safe LRU: chat clients resend the whole history every turn, so most messages repeat."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).digest()

    def get(self, key: bytes):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def cached(self, text: str, compute):
        """`compute(text)`'s result, from the memo when `text` was seen (a blank text is no PII: `()`)."""
        if not text.strip():
            return ()
        key = self.key(text)
        value = self.get(key)
        if value is None:
            value = compute(text)
            self.put(key, value)
        return value

    def put(self, key: bytes, value) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self.size:
                self._items.popitem(last=False)
