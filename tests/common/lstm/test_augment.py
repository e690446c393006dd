"""Key augmentation: copies in the corpus's own keys, in proportion, deterministic,
out-of-vocabulary copies left out, and training on the augmented text (validation never
augmented)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from common.abc.corpus import import_corpus, load_corpus
from common.abc.music import split_header
from common.abc.vocab import Vocab
from common.lstm.augment import augment_text, copy_shifts, corpus_keys
from common.lstm.training import train
from common.lstm.wholetune import corpus_tunes
from common.schemas import TrainSpec, new_run_id
from common.store.local import LocalStore
from tests.model_fixtures import TINY_CORPUS


def tune(number: int, key: str) -> str:
    return f"X:{number}\nT:t{number}\nM:4/4\nL:1/8\nK:{key}\nA|dfaf g2fg|e2ce dcBA|^GABc d4|]\n\n"


# The corpus's keys: major in D (3 tunes), G (2), A (1); dorian in A (1) and E (1).
KEYS = ["D", "D", "D", "G", "G", "A", "Ador", "E Dorian"]
TEXT = "".join(tune(n, key) for n, key in enumerate(KEYS))
VOCAB = Vocab.from_texts([TEXT, "^_=abcdefgABCDEFG#b',0123456789"])


def keys_of(tunes: list[str]) -> list[str]:
    return [split_header(t)[0]["K"] for t in tunes]


def test_copies_go_to_the_corpus_own_keys_of_the_same_mode_and_are_reproducible() -> None:
    first = augment_text(TEXT, 2, VOCAB, seed=1)
    assert first == augment_text(TEXT, 2, VOCAB, seed=1)
    tunes = corpus_tunes(first.text)
    originals = [t for t in tunes if t in corpus_tunes(TEXT)]
    assert keys_of(originals) == KEYS  # each original once, in order, its copies after it
    copies = [t for t in tunes if t not in originals]
    # Each major tune has the other two major keys; each dorian tune the other dorian key.
    assert sorted(keys_of(copies)) == sorted(
        ["G", "A"] * 3 + ["D", "A"] * 2 + ["D", "G"] + ["Edor"] + ["A Dorian"]
    )
    assert first.copies == 14 and first.skipped == 2  # a dorian tune has one other key
    assert augment_text(TEXT, 0, VOCAB, seed=1).text == TEXT


def test_keys_are_drawn_in_proportion_to_the_corpus_tunes_in_them() -> None:
    keys = corpus_keys([tune(0, "D")] * 30 + [tune(1, "G")] * 10 + [tune(2, "C")] * 60)
    assert keys == Counter({(2, "maj"): 30, (7, "maj"): 10, (0, "maj"): 60})
    rng = random.Random(0)
    drawn = Counter(copy_shifts(tune(0, "D"), 1, rng, keys)[0] for _ in range(2000))
    assert set(drawn) == {5, -2}  # to G (up a fourth) and to C (down a tone), never to D itself
    assert drawn[-2] / drawn[5] == pytest.approx(6, rel=0.2)  # 60 tunes in C against 10 in G


def test_copies_the_vocabulary_cannot_write_are_left_out() -> None:
    # Every letter and sign but "_" and "=": copies that need a flat or a natural cannot be written.
    vocab = Vocab.from_texts([TEXT, "abcdefgABCDEFG#^',0123456789"])
    text = TEXT + tune(9, "F")
    result = augment_text(text, 3, vocab, seed=0)
    assert all(char in vocab for char in result.text)
    assert 0 < result.copies < augment_text(text, 3, VOCAB, seed=0).copies


def test_a_tune_without_a_movable_key_gets_no_copies() -> None:
    keys = corpus_keys([tune(0, "D"), tune(1, "G")])
    assert copy_shifts("X:1\nT:p\nK:Hp\nABc|\n\n", 2, random.Random(0), keys) == []
    assert copy_shifts("X:1\nT:p\nABc|\n\n", 2, random.Random(0), keys) == []
    assert copy_shifts(tune(2, "Bm"), 2, random.Random(0), keys) == []  # no other minor key


def test_training_with_copies_trains_on_the_augmented_text_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    corpus = load_corpus(store, "tiny")
    plain = train(store, TrainSpec(corpus="tiny", preset="tiny", epochs=1), new_run_id())
    spec = TrainSpec(corpus="tiny", preset="tiny", epochs=1, transpose_copies=1)
    augmented = train(store, spec, new_run_id())
    assert augmented.transpose_copies == 1 and plain.transpose_copies == 0
    made = augment_text(corpus.train_text, 1, corpus.vocab, seed=0)
    assert made.copies > 0.9 * made.tunes  # nearly every O'Neill's tune has a copy
    ratio = augmented.chars_processed / plain.chars_processed
    assert abs(ratio - len(made.text) / len(corpus.train_text)) < 0.01
    # Validation is the corpus's own tunes in their own keys for both.
    assert augmented.valid_bits_per_char is not None and plain.valid_bits_per_char is not None
