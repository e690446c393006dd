"""The musicality score: overlap of distance densities, the stored reference, and that it tells
held-out human tunes from bar-shuffled tunes and random walks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.abc import notation as abc_notation
from common.quality.controls import bar_shuffled, random_walks
from common.quality.musicality import FAMILIES, Piece, features, piece_of, tune_features
from common.quality.overlap import Reference, compare, compare_feature, split_halves
from common.quality.reference import (
    FEATURES_VERSION,
    load_reference,
    musicality,
    reference_and_human,
    reference_key,
)
from common.store.local import LocalStore
from tests.quality_fixtures import REFERENCE, copy_reference


def test_overlap_of_distance_densities() -> None:
    rng = np.random.default_rng(0)
    intra = rng.normal(1.0, 0.2, 2000)
    same = compare_feature(intra, rng.normal(1.0, 0.2, 2000), bandwidth=0.05)
    assert same.overlap is not None and same.overlap > 0.95
    assert same.kl is not None and same.kl < 0.05
    apart = compare_feature(intra, rng.normal(3.0, 0.2, 2000), bandwidth=0.05)
    assert apart.overlap is not None and apart.overlap < 0.01
    half = compare_feature(intra, rng.normal(1.3, 0.2, 2000), bandwidth=0.05)
    assert half.overlap is not None and 0.3 < half.overlap < 0.6  # 2 Phi(-0.75) = 0.45
    assert compare_feature(intra, np.zeros(0), bandwidth=0.05).overlap is None


def test_split_halves_is_stable_and_disjoint() -> None:
    tunes = [f"X:{i}\nT:t{i}\nK:G\nGABc|\n" for i in range(21)]
    first, second = split_halves(tunes)
    assert (len(first), len(second)) == (11, 10) and not set(first) & set(second)
    assert split_halves(list(reversed(tunes))) == (first, second)


@pytest.fixture
def store(oneills_reference: LocalStore, tmp_path: Path) -> LocalStore:
    target = LocalStore(tmp_path / "data")
    copy_reference(oneills_reference, target)
    return target


def human_pieces(store: LocalStore) -> tuple[Reference, list[Piece]]:
    reference, human = reference_and_human(store, [REFERENCE])
    return reference, [piece_of(t) for t in human]


def test_held_out_tunes_score_above_bar_shuffled_tunes_and_random_walks(
    store: LocalStore,
) -> None:
    """A measure that cannot tell human tunes from these controls is no measure: both score
    clearly lower overall, and lower on the structure family, where tunes are tunes."""
    reference, pieces = human_pieces(store)
    assert reference.tunes >= 40 and len(pieces) >= 40
    human = compare([features(p) for p in pieces], reference)
    shuffled = compare([features(p) for p in bar_shuffled(pieces, seed=1)], reference)
    walks = compare([features(p) for p in random_walks(pieces, seed=1)], reference)
    assert human.overall is not None and shuffled.overall is not None
    assert walks.overall is not None
    assert human.overall > 0.9
    assert shuffled.overall < human.overall - 0.04
    assert walks.overall < human.overall - 0.05
    for control in (shuffled, walks):
        assert control.families["structure"] is not None
        assert human.families["structure"] is not None
        assert control.families["structure"] < human.families["structure"] - 0.05
    # What each control breaks, in plain figures.
    assert human.summary["repeated_bars"] is not None
    assert shuffled.summary["repeated_bars"] is not None
    assert shuffled.summary["repeated_bars"] < 0.6 * human.summary["repeated_bars"]
    assert walks.summary["final_tonic"] is not None and human.summary["final_tonic"] is not None
    assert walks.summary["final_tonic"] < 0.5 * human.summary["final_tonic"]
    # The walks keep the human rhythms: their rhythm family scores as the human tunes do.
    assert walks.families["rhythm"] == human.families["rhythm"]


def test_controls_keep_keys_meters_and_bar_lengths(store: LocalStore) -> None:
    _, pieces = human_pieces(store)
    for control in (bar_shuffled(pieces, seed=2), random_walks(pieces, seed=2)):
        assert len(control) == len(pieces)
        for made, source in zip(control, pieces, strict=True):
            assert (made.tonic, made.mode, made.meter_text) == (
                source.tonic,
                source.mode,
                source.meter_text,
            )
            assert [b.duration for b in made.bars] == [b.duration for b in source.bars]
    assert bar_shuffled(pieces, seed=3) == bar_shuffled(pieces, seed=3)  # seeded


def test_the_reference_is_built_once_and_rebuilt_when_stale(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = store.get_bytes(reference_key(REFERENCE))
    reference = load_reference(store, REFERENCE)
    assert reference.source.endswith(f":{FEATURES_VERSION}")
    assert set(reference.baselines) == {"human", "corpus"}
    assert reference.baselines["human"]["overall"] is not None

    built: list[str] = []
    from common.quality import reference as module

    real = module.reference_of

    def counted(name: str, *args: Any, **kwargs: Any) -> Reference:
        built.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(module, "reference_of", counted)
    load_reference(store, REFERENCE)
    assert built == []  # read from the store
    # A round trip through JSON scores a set exactly as the reference it was built as.
    tunes = [tune_features(t) for t in abc_notation.split_tunes(TUNES)]
    again = Reference.from_json(stored.decode())
    assert compare(tunes, again) == compare(tunes, reference)

    monkeypatch.setattr(module, "FEATURES_VERSION", FEATURES_VERSION + 1)
    load_reference(store, REFERENCE)
    assert built == [REFERENCE]


TUNES = """X:1
T:One
M:6/8
L:1/8
K:D
|:A|dfa afd|gfe dcB|AFA dfa|gec d2:|

X:2
T:Two
M:4/4
L:1/8
K:Ador
|:EAAB cBAG|EGGF GABd|eaag efge|dBGB A4:|
"""


def test_musicality_report_or_why_not(store: LocalStore, tmp_path: Path) -> None:
    tunes = [tune_features(t) for t in abc_notation.split_tunes(TUNES)]
    report = musicality(store, REFERENCE, tunes)
    assert report.unavailable is None and report.tunes == 2
    assert report.overall is not None and 0 < report.overall <= 1
    assert set(report.families) == set(FAMILIES)
    assert report.figures["final_tonic"] == 1.0
    assert report.baselines["human"]["final_tonic"] is not None

    empty = LocalStore(tmp_path / "empty")
    missing = musicality(empty, REFERENCE, tunes)
    assert missing.overall is None and missing.unavailable is not None
    assert "producer corpus import oneills" in missing.unavailable
    assert musicality(empty, "", tunes).unavailable == "no musicality reference configured"
