"""Melody similarity: transposition-blind interval n-grams and the inverted index."""

from __future__ import annotations

import numpy as np

from common.quality.figures import assess_tune, summarise
from common.quality.similarity import (
    MelodyIndex,
    distinct_share,
    fingerprint,
    fingerprint_of_pitches,
    similarity,
)

REEL = "X:1\nT:Reel\nM:C|\nL:1/8\nK:D\n|:DFAF DFAF|GBdB GBdB|ABcd efge|fdec d4:|\n"
JIG = "X:2\nT:Jig\nM:6/8\nL:1/8\nK:G\n|:GAB cBA|BGE DEG|AcB AGE|GAB G3:|\n"


def test_transposition_and_repeats_do_not_change_the_fingerprint() -> None:
    up = REEL.replace("K:D", "K:E").replace("DFAF DFAF", "EGBG EGBG")
    assert np.array_equal(fingerprint(REEL)[:3], fingerprint(REEL)[:3])
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    assert np.array_equal(
        fingerprint_of_pitches(scale), fingerprint_of_pitches([p + 5 for p in scale])
    )
    assert similarity(fingerprint(REEL), fingerprint(REEL)) == 1.0
    assert 0.0 < similarity(fingerprint(up), fingerprint(REEL)) < 1.0
    assert similarity(fingerprint(JIG), fingerprint(REEL)) < 0.2
    assert (
        len(fingerprint_of_pitches([60, 62])) == 0
        and similarity(np.zeros(0, np.int64), fingerprint(REEL)) == 0.0
    )


def test_index_finds_the_tune_a_melody_was_lifted_from() -> None:
    index = MelodyIndex.from_tunes([JIG, REEL])
    copy = REEL.replace("T:Reel", "T:Mine").replace("fdec d4", "fdec dcBA")
    match = index.nearest(fingerprint(copy))
    assert match is not None and match.name == "1: Reel" and match.similarity >= 0.5
    assert match.similarity == round(similarity(fingerprint(copy), fingerprint(REEL)), 4)
    assert list(index.counts(fingerprint(JIG))) == [len(fingerprint(JIG)), 0]
    assert index.nearest(fingerprint(JIG), exclude=0) is not None
    assert MelodyIndex([], []).nearest(fingerprint(JIG)) is None
    loaded = MelodyIndex.from_bytes(index.to_bytes())
    assert loaded.names == index.names and loaded.nearest(fingerprint(copy)) == match


def test_index_agrees_with_pairwise_similarity_on_random_melodies() -> None:
    rng = np.random.default_rng(3)
    tunes = [list(60 + np.cumsum(rng.integers(-3, 4, size=60))) for _ in range(50)]
    prints = [fingerprint_of_pitches(t) for t in tunes]
    index = MelodyIndex([str(i) for i in range(50)], prints)
    query = fingerprint_of_pitches(tunes[7][:30] + tunes[9][30:])
    counts = index.counts(query)
    for i, p in enumerate(prints):
        assert counts[i] == int(np.isin(query, p).sum())
    assert distinct_share(prints) > 0.9 and distinct_share([prints[0], prints[0]]) == 0.0


def test_quality_summary_of_a_set() -> None:
    index = MelodyIndex.from_tunes([REEL])
    short = REEL.replace("fdec d4:|", "fdec d3:|")
    tunes = [assess_tune(REEL, index=index), assess_tune(short), assess_tune(JIG, index=index)]
    assert tunes[0].near_copy() and not tunes[2].near_copy()
    assert tunes[1].rhythm_ok is False and tunes[1].reasons[0].startswith("rhythm: bar 4")
    report = summarise(tunes, tries=6, tries_valid=3, tries_rhythm_ok=4)
    assert report.tunes == 3 and report.valid is None
    assert report.rhythm_ok == round(2 / 3, 4) and report.bar_regularity == round(11 / 12, 4)
    assert report.near_copy == 0.5 and report.raw_rhythm_ok == round(4 / 6, 4)
    assert 0.0 < report.diversity <= 1.0 and report.mean_bars == 4.0
    assert report.keys == {"D": round(2 / 3, 4), "G": round(1 / 3, 4)}


def test_key_spread_names_a_key_once_however_it_is_written() -> None:
    """``K:A Dorian`` and ``K:Ador`` are one key, ``K:Em``/``K:E minor``/``K:Eaeo`` another; a tune
    without a readable key is left out of the shares, not counted as C."""
    heads = ["K:Ador", "K:A Dorian", "K:Em", "K:E minor", "K:Eaeo % a comment", "K:none", "K:G"]
    tunes = [assess_tune(f"X:1\nM:6/8\nL:1/8\n{k}\nABc dBA|\n") for k in heads]
    assert [t.key for t in tunes] == ["Ador", "Ador", "Em", "Em", "Em", None, "G"]
    assert summarise(tunes).keys == {"Em": 0.5, "Ador": round(2 / 6, 4), "G": round(1 / 6, 4)}
    assert summarise(tunes[5:6]).keys is None
