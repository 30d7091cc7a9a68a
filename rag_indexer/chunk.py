"""The unit the indexer stores and the retriever returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """A contiguous piece of one file; lines are 1-based and inclusive."""

    path: str
    start_line: int
    end_line: int
    text: str
    language: str = "text"
    symbol: str = ""
    heading: str = ""

    @property
    def cite(self) -> str:
        """`path:Lstart-Lend`, the label used in context blocks and CLI output."""
        return f"{self.path}:L{self.start_line}-L{self.end_line}"
