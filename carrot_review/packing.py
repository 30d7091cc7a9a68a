"""Pack reviewed hunks into model requests that each stay under a token budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from carrot_review.diff import Diff, DiffLine, Hunk

MAX_LINE_CHARS = 400  # minified/one-line blobs are cut so one line cannot blow the budget
SEPARATOR_TOKENS = 1  # the blank line between parts of a chunk


@dataclass
class Chunk:
    """The diff text of one model request and the files it covers."""

    parts: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    tokens: int = 0

    @property
    def text(self) -> str:
        return "\n\n".join(self.parts)


def render_line(line: DiffLine) -> str:
    """`<new line no> <kind> <text>`: the model sees the exact new-side number to cite."""
    num = "" if line.new_line is None else str(line.new_line)
    text = line.text if len(line.text) <= MAX_LINE_CHARS else line.text[:MAX_LINE_CHARS] + " …"
    return f"{num:>5} {line.kind} {text}"


def _whole(hunk: Hunk) -> tuple[str, list[str], str]:
    """The hunk's head, its rendered lines, and the two as one text."""
    head = f"### {hunk.path}\n{hunk.header}"
    rendered = [render_line(ln) for ln in hunk.lines]
    return head, rendered, head + "\n" + "\n".join(rendered)


def fits_one_request(diff: Diff, budget: int) -> bool:
    """Whether the whole reviewed diff fits one request by its UTF-8 size alone: no token is shorter than a
    byte, so then any token count packs it into one chunk and counting exactly is not needed."""
    size = sum(len(_whole(h)[2].encode()) + SEPARATOR_TOKENS for f in diff.reviewed for h in f.hunks)
    return size <= budget


def _pieces(hunk: Hunk, budget: int, count: Callable[[str], int]) -> Iterable[str]:
    """The hunk as one text, or cut into consecutive line windows if it alone exceeds the budget.

    A window holds at least one line, so a single line over the budget is sent on its own."""
    head, rendered, whole = _whole(hunk)
    if count(whole) <= budget:
        yield whole
        return
    head += " (continued)"
    i = 0
    while i < len(rendered):
        used, j = count(head) + count(rendered[i]) + 1, i + 1
        while j < len(rendered) and used + count(rendered[j]) + 1 <= budget:
            used, j = used + count(rendered[j]) + 1, j + 1
        while j - i > 1 and count(_window(head, rendered[i:j])) > budget:  # the sum was an estimate
            j -= 1
        yield _window(head, rendered[i:j])
        i = j


def _window(head: str, lines: list[str]) -> str:
    return head + "\n" + "\n".join(lines)


def pack(diff: Diff, budget: int, count: Callable[[str], int]) -> list[Chunk]:
    """Greedy, order-preserving packing of every reviewed hunk into chunks of at most `budget` tokens."""
    if budget < 64:
        raise ValueError(f"token budget {budget} is too small (minimum 64)")
    chunks: list[Chunk] = []
    current = Chunk()
    for file in diff.reviewed:
        for hunk in file.hunks:
            for piece in _pieces(hunk, budget, count):
                cost = count(piece)
                if current.parts and current.tokens + SEPARATOR_TOKENS + cost > budget:
                    chunks.append(current)
                    current = Chunk()
                if current.parts:
                    cost += SEPARATOR_TOKENS
                current.parts.append(piece)
                current.files.add(file.path)
                current.tokens += cost
    if current.parts:
        chunks.append(current)
    return chunks
