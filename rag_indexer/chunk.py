"""The unit the indexer stores and the retriever returns."""

from __future__ import annotations

from dataclasses import dataclass, replace

FILE_KINDS = ("source", "test", "vendored", "docs", "changelog", "example", "tooling", "config", "generated")


@dataclass(frozen=True)
class Chunk:
    """A contiguous piece of one file; lines are 1-based and inclusive.

    `kind` is the file's kind (FILE_KINDS), `package` the vendored project's name. A small doc passage
    carries its enclosing section as `parent` (start line, end line, text): matched on the passage,
    the model gets the section, so an answer is never cut in two.
    """

    path: str
    start_line: int
    end_line: int
    text: str
    language: str = "text"
    symbol: str = ""
    heading: str = ""
    kind: str = "source"
    package: str = ""
    parent: tuple[int, int, str] | None = None

    @property
    def cite(self) -> str:
        """`path:Lstart-Lend`, the label used in context blocks and CLI output."""
        return f"{self.path}:L{self.start_line}-L{self.end_line}"

    def enclosing(self) -> Chunk:
        """What the model is handed: the parent section when there is one, else the chunk itself."""
        if self.parent is None:
            return self
        start, end, text = self.parent
        return replace(self, start_line=start, end_line=end, text=text, parent=None)
