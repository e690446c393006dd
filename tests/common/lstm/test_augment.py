"""Key augmentation: copies in folk keys, deterministic, out-of-vocabulary copies left out, and
training on the augmented text (validation never augmented)."""

from __future__ import annotations

import random
from pathlib import Path

from common.abc.corpus import import_corpus, load_corpus
from common.abc.music import split_header
from common.abc.transpose import key_sharps
from common.abc.vocab import Vocab
from common.lstm.augment import MAX_ACCIDENTALS, augment_text, copy_shifts
from common.lstm.training import train
from common.lstm.wholetune import corpus_tunes
from common.schemas import TrainSpec, new_run_id
from common.store.local import LocalStore
from tests.model_fixtures import TINY_CORPUS

REEL = "X:1\nT:r\nM:4/4\nL:1/8\nK:D\nA|dfaf g2fg|e2ce dcBA|^GABc d4|]\n\n"
AIR = "X:2\nT:a\nM:3/4\nL:1/8\nK:Ador\nE2|A4 B2|c4 d2|e6|]\n\n"


def test_copies_go_to_distinct_folk_keys_and_the_same_seed_gives_the_same_text() -> None:
    text = REEL + AIR
    vocab = Vocab.from_texts([text, "^_=abcdefgABCDEFG#b',"])
    first = augment_text(text, 3, vocab, seed=1)
    assert first.tunes == 2 and first.copies == 6 and first.skipped == 0
    assert first == augment_text(text, 3, vocab, seed=1)
    assert first.text != augment_text(text, 3, vocab, seed=2).text
    tunes = corpus_tunes(first.text)
    assert tunes[0] == REEL and tunes[4] == AIR  # each original, then its copies
    for copies in (tunes[1:4], tunes[5:8]):
        keys = [split_header(t)[0]["K"] for t in copies]
        assert len(set(keys)) == 3
        sharps = [key_sharps(k) for k in keys]
        assert all(s is not None and abs(s) <= MAX_ACCIDENTALS for s in sharps), keys
    assert augment_text(text, 0, vocab, seed=1).text == text


def test_copies_the_vocabulary_cannot_write_are_left_out() -> None:
    # Every letter and sign but "_" and "=": copies that need a flat or a natural cannot be written.
    vocab = Vocab.from_texts([REEL, "abcdefgABCDEFG#^',"])
    result = augment_text(REEL, 6, vocab, seed=0)
    assert result.copies + result.skipped == 6
    assert all(char in vocab for char in result.text)
    assert 0 < result.copies < 6


def test_a_tune_without_a_movable_key_gets_no_copies() -> None:
    assert copy_shifts("X:1\nT:p\nK:Hp\nABc|\n\n", 2, random.Random(0)) == []
    assert copy_shifts("X:1\nT:p\nABc|\n\n", 2, random.Random(0)) == []


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
