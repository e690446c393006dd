"""Whole-tune scoring and training: what is scored is what the sampler computes, padding never
counts, and a model trained on whole tunes trains, resumes and records how it was scored."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from common.abc.corpus import import_corpus, load_corpus
from common.abc.vocab import Vocab
from common.errors import CancelledError, InvalidInputError
from common.lstm.evaluation import evaluate_abc
from common.lstm.network import LSTM_LAYER, build_model, load_registered
from common.lstm.sampler import Sampler
from common.lstm.training import load_run, resolve_recipe, train
from common.lstm.wholetune import (
    StreamResetter,
    TuneScorer,
    corpus_tunes,
    encode_tunes,
    file_tunes,
    length_batches,
    pad_batch,
    score_tunes,
    tune_batches,
    tune_streams,
)
from common.params import TrainOn
from common.schemas import TrainSpec, new_run_id
from common.store.local import LocalStore
from tests.model_fixtures import TINY_CORPUS, TinyEnv


def test_corpus_tunes_end_with_the_blank_line_the_sampler_stops_at() -> None:
    text = "X:1\nK:D\nabc|\n\nX:2\nK:G\nd|\n\n"
    assert corpus_tunes(text) == ["X:1\nK:D\nabc|\n\n", "X:2\nK:G\nd|\n\n"]


def test_file_tunes_are_cleaned_as_on_import_unless_raw() -> None:
    text = "%%header\nX:1\nT:A\n% a comment\nM:4/4\nK:D\nabc|\n\nX:2\nT:B\nK:D\nabc|\n"
    cleaned, found = file_tunes(text)
    assert found == 2
    assert cleaned == ["X:1\nT:A\nM:4/4\nK:D\nabc|\n\n"]  # no comment; tune 2 lacks M:
    raw, found = file_tunes(text, raw=True)
    assert found == 2 and len(raw) == 2 and "% a comment" in raw[0]


def test_length_batches_hold_every_tune_once_similar_lengths_together() -> None:
    lengths = [500, 20, 480, 30, 25, 510]
    by_rows = length_batches(lengths, rows=3)
    assert [sorted(b.tolist()) for b in by_rows] == [[1, 3, 4], [0, 2, 5]]
    by_chars = length_batches(lengths, max_chars=1100)  # 2 rows of 512 padded chars fit
    assert sorted(i for b in by_chars for i in b.tolist()) == list(range(6))
    # rows x (longest tune rounded up to 32) fits the budget: at most two of the long tunes.
    assert all(len(b) * -(-max(lengths[i] for i in b) // 32) * 32 <= 1100 for b in by_chars)
    assert max(len(b) for b in by_chars) == 3  # the three short tunes share one batch
    shuffled = length_batches(lengths, rows=3, rng=np.random.default_rng(0))
    assert sorted(i for b in shuffled for i in b.tolist()) == list(range(6))
    with pytest.raises(InvalidInputError):
        length_batches(lengths)


def test_pad_batch_masks_exactly_the_padding() -> None:
    a, b = np.array([5, 6, 7, 8], np.int32), np.array([9, 10], np.int32)
    x, y, mask = pad_batch([a, b])
    assert x.shape == y.shape == mask.shape and x.shape[1] % 32 == 0
    assert x[0, :3].tolist() == [5, 6, 7] and y[0, :3].tolist() == [6, 7, 8]
    assert x[1, :1].tolist() == [9] and y[1, :1].tolist() == [10]
    assert mask.sum(axis=1).tolist() == [3.0, 1.0]
    assert mask[0, :3].all() and not mask[0, 3:].any() and not mask[1, 1:].any()


def _tunes(env: TinyEnv, n: int) -> tuple[list[np.ndarray], Vocab]:
    corpus = load_corpus(env.store, "tiny")
    ids, _ = encode_tunes(corpus_tunes(corpus.train_text)[:n], corpus.vocab)
    return ids, corpus.vocab


def test_whole_tune_score_is_the_samplers_step_by_step_log_likelihood(
    tiny_env: TinyEnv, tmp_path: Path
) -> None:
    _, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    tunes, _ = _tunes(tiny_env, 4)
    # Independent computation: the sampler's own LSTM step, run one char at a time from a zero
    # state over each whole tune (what generation does), one tune per call.
    sampler = Sampler(model, vocab, precision="float32")
    step_nats = sum(sampler.nats_per_char(t[None, :]) * (len(t) - 1) for t in tunes)
    batched = score_tunes(model, tunes)  # tunes of different lengths, padded, in one batch
    assert batched.tunes == 4 and batched.chars == sum(len(t) - 1 for t in tunes)
    assert batched.nats == pytest.approx(step_nats, rel=1e-4)


def test_one_scorer_scores_each_new_set_of_weights_and_traces_once(
    tiny_env: TinyEnv, tmp_path: Path
) -> None:
    """The validator's scorer lives for the whole run: loading an epoch's weights must change
    its score (the compiled function reads the variables, not a copy of them), and it must not
    be traced again (TensorFlow warned of retracing every epoch when it was made per epoch)."""
    _, trained, _ = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    tunes, vocab = _tunes(tiny_env, 3)
    recipe = resolve_recipe(TrainSpec(corpus="tiny", preset="tiny"))
    fresh = build_model(len(vocab), recipe.embedding_dim, recipe.units)
    untrained_weights = fresh.get_weights()
    untrained = score_tunes(fresh, tunes).nats
    score = TuneScorer(fresh)
    for weights, expected in [(trained.get_weights(), score_tunes(trained, tunes).nats),
                              (untrained_weights, untrained)]:  # fmt: skip
        fresh.set_weights(weights)
        assert score(tunes).nats == pytest.approx(expected, rel=1e-5)
    assert score._batch_nats.experimental_get_tracing_count() == 1


def test_padding_never_counts(tiny_env: TinyEnv, tmp_path: Path) -> None:
    _, model, _ = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    tunes, _ = _tunes(tiny_env, 6)
    alone = sum(score_tunes(model, [t]).nats for t in tunes)
    together = score_tunes(model, tunes, max_chars=10**6)  # one batch, padded to the longest
    assert together.nats == pytest.approx(alone, rel=1e-5)
    # A short tune padded to a long width scores the same as on its own.
    short = min(tunes, key=len)
    x, y, mask = pad_batch([short, max(tunes, key=len)])
    probs = model.predict(x, verbose=0)
    nll = -np.log(np.take_along_axis(probs, y[..., None], -1))[..., 0]
    assert float((nll[0] * mask[0]).sum()) == pytest.approx(score_tunes(model, [short]).nats, 1e-4)


def test_tune_batches_weights_average_over_real_chars_only(tiny_env: TinyEnv) -> None:
    tunes, _ = _tunes(tiny_env, 10)
    ds, n_batches, chars = tune_batches(tunes, 4, seed=1)
    assert chars == sum(len(t) - 1 for t in tunes)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == n_batches == 3
    assert sum(int((w > 0).sum()) for _, _, w in batches) == chars  # every real char once
    for _, _, w in batches:
        # Keras averages loss x weight over all positions: that is the mean over real chars.
        assert float(w.sum()) == pytest.approx(w.size, rel=1e-5)
    again = list(ds.as_numpy_iterator())  # the next epoch: other batches, same chars
    assert sum(int((w > 0).sum()) for _, _, w in again) == chars


def test_training_on_whole_tunes_records_and_resumes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    spec = TrainSpec(corpus="tiny", preset="tiny", epochs=2, train_on=TrainOn.TUNES, batch_size=8)
    run_id = new_run_id()
    with pytest.raises(CancelledError):
        train(store, spec, run_id, should_stop=lambda: load_run(store, run_id).epochs_done >= 1)
    record = train(store, spec, run_id, resume=True)
    assert record.train_on == TrainOn.TUNES and record.valid_scored_on == TrainOn.TUNES
    assert [h["epoch"] for h in record.history] == [1.0, 2.0]
    assert record.valid_bits_per_char is not None and record.valid_window_bits_per_char
    assert record.valid_bits_per_char < math.log2(record.vocab_size)
    corpus = load_corpus(store, "tiny")
    assert record.chars_processed == 2 * sum(len(t) - 1 for t in corpus_tunes(corpus.train_text))


def test_whole_tunes_cannot_also_be_stateful() -> None:
    for unit in (TrainOn.TUNES, TrainOn.STREAMS):
        spec = TrainSpec(corpus="tiny", preset="tiny", train_on=unit, stateful=True)
        with pytest.raises(InvalidInputError, match="not both"):
            resolve_recipe(spec)


def test_evaluate_abc_scores_whole_cleaned_tunes(tiny_env: TinyEnv, tmp_path: Path) -> None:
    _, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    text = TINY_CORPUS.read_text()
    cleaned = evaluate_abc(model, vocab, text)
    raw = evaluate_abc(model, vocab, text, raw=True)
    assert cleaned.tunes == len(file_tunes(text)[0]) and not cleaned.raw
    assert raw.unknown_chars > cleaned.unknown_chars  # the raw text keeps its '%' comments
    assert 0 < cleaned.bits_per_char < math.log2(len(vocab))
    with pytest.raises(InvalidInputError, match="no tune"):
        evaluate_abc(model, vocab, "no tunes here")


def test_tune_streams_reset_at_each_tune_and_score_like_whole_tunes(
    tiny_env: TinyEnv, tmp_path: Path
) -> None:
    _, model, _ = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    tunes, vocab = _tunes(tiny_env, 7)
    streams = tune_streams(tunes, seq_len=40, streams=3, seed=0)
    assert streams.chars == sum(len(t) - 1 for t in tunes)
    assert int(streams.resets.sum()) == 7 + 0 and streams.resets[0].all()  # 7 tunes, 3 lanes
    # Run the windows through a stateful copy with the resetter, as training does: the masked
    # sum of -log p over all windows is the whole-tune score (state carried within each tune,
    # zeroed at each start, padding never counted).
    stateful = build_model(len(vocab), 16, 64, stateful_batch=3)
    stateful.set_weights(model.get_weights())
    resetter = StreamResetter(LSTM_LAYER, streams.resets)
    resetter.set_model(stateful)
    total = 0.0
    for step, (x, y, w) in enumerate(streams.dataset.as_numpy_iterator()):
        resetter.on_train_batch_begin(step)
        probs = stateful(x, training=False).numpy()
        nll = -np.log(np.take_along_axis(probs, y[..., None], -1))[..., 0]
        total += float((nll * (w > 0)).sum())
        assert float(w.sum()) == pytest.approx(w.size, rel=1e-5) or not w.any()
    assert total == pytest.approx(score_tunes(model, tunes).nats, rel=1e-4)


def test_training_on_tune_streams_records_and_resumes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    spec = TrainSpec(corpus="tiny", preset="tiny", epochs=2, train_on=TrainOn.STREAMS)
    run_id = new_run_id()
    with pytest.raises(CancelledError):
        train(store, spec, run_id, should_stop=lambda: load_run(store, run_id).epochs_done >= 1)
    record = train(store, spec, run_id, resume=True)
    assert record.train_on == TrainOn.STREAMS and record.epochs == 2
    assert record.valid_bits_per_char is not None
    assert record.valid_bits_per_char < math.log2(record.vocab_size)
