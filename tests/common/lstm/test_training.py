"""Training on the tiny preset: checkpoints, resume after an interruption, evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from common.abc.corpus import import_corpus, load_corpus
from common.errors import CancelledError, IntegrityError, InvalidInputError
from common.lstm.network import load_registered
from common.lstm.precision import cpu_has_bf16
from common.lstm.training import load_run, run_key, train
from common.lstm.windows import evaluate_text, sampled_windows, window_dataset, window_starts
from common.schemas import RunStatus, TrainSpec, new_run_id
from common.store.local import LocalStore
from tests.model_fixtures import TINY_CORPUS, TinyEnv


def test_window_starts_cover_the_text() -> None:
    assert window_starts(25, 10, 5).tolist() == [0, 5, 10]
    assert window_starts(10, 10, 1).size == 0
    with pytest.raises(InvalidInputError):
        window_starts(100, 10, 0)


def test_trained_model_is_registered_with_its_metrics(tiny_env: TinyEnv) -> None:
    m = tiny_env.model
    assert m.preset == "tiny" and m.epochs == 2 and m.corpus == "tiny"
    assert m.valid_bits_per_char is not None
    assert 0 < m.valid_bits_per_char < math.log2(m.vocab_size)  # learned something
    assert len(m.history) == 2 and m.chars_processed > 0
    run = load_run(tiny_env.store, m.run_id or "")
    assert run.status == RunStatus.DONE and run.model_id == m.id
    assert tiny_env.store.exists(run_key(run.id, "checkpoint.keras"))


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    spec = TrainSpec(corpus="tiny", preset="tiny", epochs=3)
    run_id = new_run_id()
    calls = {"n": 0}

    def stop_in_second_epoch() -> bool:
        calls["n"] += 1
        run = load_run(store, run_id)
        return run.epochs_done >= 1

    with pytest.raises(CancelledError, match="--resume"):
        train(store, spec, run_id, should_stop=stop_in_second_epoch)
    run = load_run(store, run_id)
    assert run.epochs_done == 1 and run.status == RunStatus.CANCELLED
    with pytest.raises(InvalidInputError, match="--resume"):
        train(store, spec, run_id)
    record = train(store, spec, run_id, resume=True)
    assert record.epochs == 3
    assert [h["epoch"] for h in record.history] == [1.0, 2.0, 3.0]


def test_resume_refuses_a_tampered_checkpoint(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    run_id = new_run_id()
    spec = TrainSpec(corpus="tiny", preset="tiny", epochs=2)
    with pytest.raises(CancelledError):
        train(store, spec, run_id, should_stop=lambda: load_run(store, run_id).epochs_done >= 1)
    store.put_bytes(run_key(run_id, "checkpoint.keras"), b"not the checkpoint")
    with pytest.raises(IntegrityError):
        train(store, spec, run_id, resume=True)


def test_evaluate_counts_unknown_chars(tiny_env: TinyEnv, tmp_path: Path) -> None:
    record, model, vocab = load_registered(tiny_env.store, tiny_env.model.id, tmp_path)
    text = load_corpus(tiny_env.store, "tiny").train_text[:3000]
    plain = evaluate_text(model, vocab, text, record.seq_len)
    assert plain.unknown_chars == 0 and 0 < plain.bits_per_char < 8
    odd = evaluate_text(model, vocab, text + "\u00e9\u00e8\u20ac", record.seq_len)
    assert odd.unknown_chars == 3
    assert np.isclose(odd.bits_per_char, plain.bits_per_char, atol=0.2)
    with pytest.raises(InvalidInputError, match="nothing to score"):
        evaluate_text(model, vocab, "\u20ac\u20ac", record.seq_len)


def test_stream_dataset_continues_each_row_in_the_next_batch() -> None:
    from common.lstm.windows import stream_dataset

    ids = np.arange(1000, dtype=np.int32)
    ds, windows = stream_dataset(ids, seq_len=10, batch_size=4)
    batches = list(ds.as_numpy_iterator())
    assert windows == len(batches) * 4
    (x0, y0), (x1, _) = batches[0], batches[1]
    assert x0.shape == (4, 10)
    np.testing.assert_array_equal(y0, x0 + 1)  # targets are the next char
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # row r continues row r


@pytest.mark.parametrize(
    ("stateful", "precision", "policy"),
    [(True, "float32", "float32"), (False, "bfloat16", "mixed_bfloat16"),
     (False, "mixed_bfloat16", "mixed_bfloat16")],
)  # fmt: skip
def test_stateful_and_bf16_training_variants(
    tmp_path: Path, stateful: bool, precision: str, policy: str
) -> None:
    if policy != "float32" and not cpu_has_bf16():
        policy = "float32"  # the fallback, tested in tests/common/lstm/test_precision.py
    store = LocalStore(tmp_path)
    import_corpus(store, str(TINY_CORPUS), name="tiny")
    spec = TrainSpec(
        corpus="tiny", preset="tiny", epochs=2, stateful=stateful,
        precision=precision,  # type: ignore[arg-type]
    )  # fmt: skip
    record = train(store, spec, new_run_id())
    assert record.stateful is stateful and record.precision == policy
    assert record.valid_bits_per_char is not None
    assert record.valid_bits_per_char < math.log2(record.vocab_size)
    _, model, _ = load_registered(store, record.id, tmp_path / "cache")
    assert model.get_layer("lstm").stateful is False  # the saved model samples like any other
    assert model.get_layer("lstm").dtype_policy.name == "float32"


def test_window_fraction_takes_a_fresh_subset_each_epoch() -> None:
    ids = np.arange(2000, dtype=np.int32)  # a window's first char is its start
    ds = window_dataset(ids, seq_len=10, step=2, batch_size=1000, shuffle_seed=3, fraction=0.2)
    total = len(window_starts(len(ids), 10, 2))
    epochs = [np.concatenate([x[:, 0] for x, _ in ds.as_numpy_iterator()]) for _ in range(2)]
    assert [len(e) for e in epochs] == [sampled_windows(total, 0.2)] * 2 == [199, 199]
    # different windows each epoch, drawn from all alignments
    assert set(epochs[0].tolist()) != set(epochs[1].tolist())
    with pytest.raises(InvalidInputError, match="seed"):
        window_dataset(ids, seq_len=10, step=2, batch_size=8, fraction=0.5)
