"""Hostile prompts: texts that make naive text scanning slow (one unit repeated, and shapes that once took
seconds), timed through each pass the gateway runs on a prompt before the model sees it. Work that grows
faster than the text shows here as seconds; a PII pass over its timeout is an engine failure, and a regex
that backtracks holds the GIL, so the whole gateway waits. Used by `bench/guardrails.py --pii-only`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

UNITS = (" ", "\t", "\n", "@", "a@b", ".", "-", "=", "(", "f(", "'", "''a", '"', "`", "\\", "1", "12 ", "+1 ", "a", "a.", "a/",
         "Anna ", "Ab ", "my name is ", "call me at ", "    x\n", "# ", "/*", '"""', "<!--", "```", "DE89 ", "St. ",
         'File "', "x.py:1: in f\n", "a: b\n", "<system-reminder>x ", "<system-reminder>x</system-reminder>")


def texts(size: int = 60_000) -> dict[str, str]:
    """Prompts of about `size` characters, by label."""
    out = {repr(u): (u * (size // len(u) + 1))[:size] for u in UNITS}
    out["call, spaces, word"] = "f(x)" + " " * size + "y"
    out["decorator, spaces, comment"] = "@dispatch(A, B)" + " " * size + "# type: ignore"
    out["annotation with 26 |"] = "see:\nx: int" + "|a" * 26 + " b"
    out["JSON line of addresses"] = json.dumps([{"id": i, "email": f"user{i}@gmail.com"} for i in range(size // 44)])
    out["traceback frame, no quote"] = 'File "' + "a" * size
    out["indented long word"] = "    " + "a" * size
    out["fenced long word"] = "```\n" + "a" * size + "\n```"
    out["report row, spaces, word"] = "a: b\n" + " " * size + "x"
    out["spaces, then report rows"] = " " * size + "x\n" + "\n".join(f"pkg{i}: {i}.2.3" for i in range(10))
    out["fenced quotes and letters"] = "```\n" + "''a" * (size // 3) + "\n```"
    out["annotation, brackets and |"] = "x: int[" + "]|a" * (size // 3) + " b"
    out["author words, then addresses"] = "# " + "author " * (size // 7) + "=\n# joe@corp.io ann@corp.io bob@corp.io\n"
    return out


def rag_query_shaping(text: str) -> None:
    """What a retrieving request does to the message before any search: the user's words, cleaning, shaping,
    query terms."""
    from carrot_hooks.messages import users_words
    from rag_indexer.query import clean, shape
    from rag_indexer.retrieve import typo_candidates
    from rag_indexer.text import search_text

    text = users_words(text)  # the user's words, as the gateway takes them from the turn
    shaped = shape(text, clean(text))
    search_text(shaped.text)
    typo_candidates(shaped.text)


def report(passes: dict[str, Callable[[str], object]], pii_timeout_ms: float, size: int = 60_000) -> None:
    """Per pass, the slowest texts by wall time (as the PII timeout counts)."""
    prompts = texts(size)
    print(f"  hostile prompts ({len(prompts)}, about {size:,} characters each; PII timeout {pii_timeout_ms:.0f} ms), slowest:")
    for name, run in passes.items():
        worst = []
        for label, text in prompts.items():
            t = time.perf_counter()
            run(text)
            worst.append(((time.perf_counter() - t) * 1000, label))
        worst.sort(reverse=True)
        print(f"    {name}: " + ", ".join(f"{ms:.0f} ms ({label})" for ms, label in worst[:3]))
