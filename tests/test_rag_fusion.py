"""Fusion of the rankings: files first for code (RRF over each ranking's file order), then their chunks; long
documents discounted."""

from __future__ import annotations

import math

import pytest

from rag_indexer.fusion import file_order, long_files_discounted, rrf

PATH_OF = {1: "a.py", 2: "a.py", 3: "b.py", 4: "c.py", 5: "c.py"}


def test_a_file_that_several_chunks_put_on_top_beats_the_single_best_chunk():
    rankings = [[3, 1, 4], [1, 3], [2, 3, 5]]  # chunk 3 (b.py) is in every ranking; a.py leads two of them
    weights = [1.0, 1.0, 1.0]
    fused = rrf(rankings, 10, weights)
    assert max(fused, key=fused.get) == 3  # chunk by chunk, b.py would win
    order = file_order(rankings, weights, 10, fused, PATH_OF)
    files = list(dict.fromkeys(PATH_OF[c] for c in order))
    assert files[0] == "a.py"
    assert order[: len(files)] == [max((c for c in fused if PATH_OF[c] == f), key=fused.get) for f in files]
    assert sorted(order) == sorted(fused)  # every candidate kept: best chunk of each file first, then the rest


def test_weights_decide_between_rankings_that_disagree():
    rankings = [[3], [4]]
    fused = rrf(rankings, 10, [2.0, 1.0])
    assert file_order(rankings, [2.0, 1.0], 10, fused, PATH_OF)[0] == 3
    fused = rrf(rankings, 10, [1.0, 2.0])
    assert file_order(rankings, [1.0, 2.0], 10, fused, PATH_OF)[0] == 4


def test_typo_candidates_are_prose_words_not_identifiers():
    """`gateway_error`, `GatewayError`, `model.valid`'s tail and `--opt-name` are names: a trigram lookup for each
    cost ~2-7 ms on a large store and mapped `gatewayerror` to `gateway`."""
    from rag_indexer.retrieve import typo_candidates

    text = ("How do I start the disconected instal? Disconected. GatewayError gateway_error model.valid x2y "
            "(air-gaped) \"INSTALATION\", instalación naïve")
    assert typo_candidates(text).split() == ["How", "do", "I", "start", "the", "disconected", "instal", "Disconected",
                                             "model", "air", "gaped", "INSTALATION", "instalación", "naïve"]


def test_chunks_of_files_longer_than_the_median_are_discounted_by_their_length():
    path_of = {1: "guide.md", 2: "page.md", 3: "other.md", 4: "guide.md"}
    chunks_in = {"guide.md": 40, "page.md": 4, "other.md": 4}
    fused = {1: 0.13, 2: 0.12, 3: 0.05, 4: 0.04}
    out = long_files_discounted(fused, path_of, chunks_in, 0.1)
    assert out[2] == fused[2] and out[3] == fused[3]  # at the median: as fused
    assert out[1] == pytest.approx(0.13 / (1 + 0.1 * math.log(10)))
    assert max(out, key=out.get) == 2
    assert long_files_discounted(fused, path_of, {}, 0.1) == fused
