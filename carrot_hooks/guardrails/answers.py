"""Applying output findings to answer text: redaction, block notices, flag notes, chunk text."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .rules import Finding, redact

Scan = Callable[[str], list[Finding]]
UNRESTORED = "egress-unrestored"  # a tool call holding a placeholder the risk level does not restore (`vaults.withheld`)


def filter_text(text: str, scan: Scan) -> tuple[str, list[Finding]]:
    """`text` with redact/block findings replaced by `[REDACTED:<rule>]`, and the findings."""
    hits = scan(text)
    return (redact(text, hits) if hits else text), hits


def notice(rule_ids: Iterable[str], findings: Iterable[Finding] = ()) -> str:
    """What a blocked answer is replaced with (rule ids, never the matched text), then what an unrestored
    placeholder's finding says (why, and how to proceed)."""
    said = dict.fromkeys(f.description for f in findings if f.rule_id == UNRESTORED)
    return " ".join([f"[blocked by carrot guardrails: {', '.join(dict.fromkeys(rule_ids))}]", *said])


def flag_note(rule_ids: Iterable[str]) -> str:
    """The note appended to a chat answer with flagged findings ("" when none)."""
    flags = sorted(set(rule_ids))
    return f"\n\n[carrot guardrails flagged: {', '.join(flags)}]" if flags else ""


def set_text(choice, text: str) -> None:
    """Put `text` into a stream chunk's choice: chat delta content, or a text completion's text."""
    if getattr(choice, "delta", None) is not None:
        choice.delta.content = text or None
    else:
        choice.text = text


def text_chunk(template, texts: dict[int, str], sides: dict[tuple[int, str], str] | None = None):
    """A final chunk shaped like `template` carrying text still held when the upstream ended (`sides`:
    other delta fields' text by choice and field)."""
    sides = {k: v for k, v in (sides or {}).items() if v}
    chunk = template.model_copy(deep=True)
    chunk.choices = [c for c in chunk.choices if texts.get(c.index) or any(i == c.index for i, _ in sides)]
    for c in chunk.choices:
        set_text(c, texts.get(c.index, ""))
        for (i, field), text in sides.items():
            if i == c.index and getattr(c, "delta", None) is not None:
                setattr(c.delta, field, text)
    return chunk
