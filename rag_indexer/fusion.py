"""Fusing rankings into one order: weighted RRF, files first for code, file kinds in policy order,
near-duplicate documents spread out."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence

_WORD = re.compile(r"\w+")


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal-rank fusion of ranked id lists."""
    fused: dict[int, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, cid in enumerate(ranking):
            fused[cid] = fused.get(cid, 0.0) + w / (k + rank + 1)
    return fused


def file_order(rankings: list[list[int]], weights: list[float], k: int, fused: dict[int, float],
               path_of: dict[int, str]) -> list[int]:
    """Chunk ids ordered file by file: files fused by RRF over each ranking's file order (a file ranks
    where its best chunk does), then the best chunk of each file in that order, then the second, ..."""
    file_rankings = [list(dict.fromkeys(path_of[c] for c in ranking)) for ranking in rankings]
    file_score = rrf(file_rankings, k, weights)
    by_file: dict[str, list[int]] = {}
    for cid in sorted(fused, key=lambda c: -fused[c]):
        by_file.setdefault(path_of[cid], []).append(cid)
    files = sorted(by_file, key=lambda p: -file_score.get(p, 0.0))
    depth = max((len(ids) for ids in by_file.values()), default=0)
    return [by_file[p][i] for i in range(depth) for p in files if i < len(by_file[p])]


def long_files_discounted(fused: dict[int, float], path_of: dict[int, str], chunks_in: dict[str, int],
                          alpha: float) -> dict[int, float]:
    """`fused` with each chunk of a file longer than the median file among them divided by
    1 + alpha·ln(its chunks / that median): a long guide's many chunks are many chances to come first."""
    if not chunks_in:
        return fused
    median = statistics.median(chunks_in.values())
    return {c: s / (1 + alpha * max(0.0, math.log(chunks_in.get(path_of[c], 1) / median))) for c, s in fused.items()}


def by_tier(order: Sequence[int], tier: Callable[[int], int | None]) -> list[list[int]]:
    """`order` split into tiers (0 first; relative order kept within a tier); tier None drops the id."""
    groups: dict[int, list[int]] = {}
    for cid in order:
        t = tier(cid)
        if t is not None:
            groups.setdefault(t, []).append(cid)
    return [groups[t] for t in sorted(groups)]


def from_first_answering(groups: Sequence[Sequence[int]], answers: Callable[[int], bool]) -> list[int]:
    """The groups from the first one holding an answering id on, joined: a later tier (docs, changelog)
    comes first only when nothing in the earlier ones answers. Empty when nothing answers."""
    for i, group in enumerate(groups):
        if any(answers(c) for c in group):
            return [c for g in groups[i:] for c in g]
    return []


def shingles(text: str, n: int = 3) -> frozenset[str]:
    words = [w.lower() for w in _WORD.findall(text)]
    return frozenset(" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def diversify(order: Sequence[int], text_of: Callable[[int], str], k: int, threshold: float) -> list[int]:
    """The first `k` of `order`, a candidate whose text is a near-copy (word-trigram Jaccard ≥ `threshold`)
    of one already taken moved behind the others: one guide per cloud does not fill every slot."""
    if threshold >= 1.0:
        return list(order[:k])
    taken: list[int] = []
    later: list[int] = []
    seen: list[frozenset[str]] = []
    for cid in order:
        if len(taken) >= k:
            break
        sig = shingles(text_of(cid))
        if any(jaccard(sig, s) >= threshold for s in seen):
            later.append(cid)
            continue
        taken.append(cid)
        seen.append(sig)
    return (taken + later)[:k]
