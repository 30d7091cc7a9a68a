"""Per-request placeholder vault: the same value always maps to the same `<LABEL_n>`, and back."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*_\d+)>")


@dataclass
class Vault:
    """Stable placeholders for one request: the same value always maps to the same `<LABEL_n>`."""

    by_value: dict[str, str] = field(default_factory=dict)
    by_placeholder: dict[str, str] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)

    def placeholder(self, label: str, value: str) -> str:
        """The placeholder for `value`, minting `<LABEL_n>` on first sight."""
        if value not in self.by_value:
            self.counts[label] += 1
            ph = f"<{label}_{self.counts[label]}>"
            self.by_value[value] = ph
            self.by_placeholder[ph] = value
        return self.by_value[value]

    def restore(self, text: str) -> str:
        """`text` with every known placeholder replaced by its original value."""
        if not self.by_placeholder or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.by_placeholder.get(m.group(0), m.group(0)), text)

    def known(self, text: str) -> list[str]:
        """The placeholders of this vault that occur in `text`, each once."""
        return list(dict.fromkeys(m.group(0) for m in _PLACEHOLDER.finditer(text) if m.group(0) in self.by_placeholder))

    def __repr__(self) -> str:  # never print the originals
        return f"Vault({len(self.by_value)} values)"

    __str__ = __repr__
