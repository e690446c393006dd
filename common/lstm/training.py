"""Training and evaluation of the char-LSTM, with a checkpoint every epoch and resume after a kill.

A training run is a record (``runs/<run_id>/run.json``) plus a checkpoint
(``runs/<run_id>/checkpoint.keras``, optimizer state included) in the artifact store. Both are
rewritten after every epoch, record last, so a run killed at any moment resumes from the last
complete epoch; the checkpoint's hash is in the record and is checked before it is loaded.

Windows: the original recipe cut a window of ``seq_len`` (100) chars every ``window_step`` (10)
chars, so each epoch pushes every character through the network ``seq_len / window_step`` times.
The step is an option; the README says what it costs and buys. With ``train_on`` ``tunes`` or
``streams`` the unit is a whole tune instead (`common.lstm.wholetune`). Whatever the unit, the
validation score is bits/char over whole validation tunes from a zero state, as the sampler runs
the model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from common.abc.corpus import load_corpus
from common.abc.vocab import Vocab
from common.errors import CancelledError, IntegrityError, InvalidInputError, NotFoundError
from common.files import file_sha256
from common.lstm.network import (
    LSTM_LAYER,
    Preset,
    build_model,
    get_preset,
    load_verified,
    save_inference_model,
)
from common.lstm.precision import training_policy
from common.lstm.registry import register_model
from common.lstm.wholetune import (
    StreamResetter,
    corpus_tunes,
    encode_tunes,
    score_tunes,
    tune_batches,
    tune_streams,
)
from common.schemas import (
    ModelRecord,
    RunRecord,
    RunStatus,
    TrainOn,
    TrainSpec,
    check_run_id,
    now,
)
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

LN2 = math.log(2.0)


class TrainingObserver(Protocol):
    """Receives progress; the CLI draws a bar with it, a worker writes it to the job record."""

    def on_start(
        self, run_id: str, epochs: int, steps_per_epoch: int, initial_epoch: int
    ) -> None: ...

    def on_batch(self, epoch: int, step: int, loss: float) -> None: ...

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...


class SilentObserver:
    def on_start(self, run_id: str, epochs: int, steps_per_epoch: int, initial_epoch: int) -> None:
        pass

    def on_batch(self, epoch: int, step: int, loss: float) -> None:
        pass

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass


def resolve_recipe(spec: TrainSpec) -> Preset:
    """The preset with the spec's overrides applied: the resolved parameters of one run, with
    the precision resolved for this machine (so call it where the training runs)."""
    p = get_preset(spec.preset)
    recipe = dataclasses.replace(
        p,
        window_step=spec.window_step or p.window_step,
        batch_size=spec.batch_size or p.batch_size,
        learning_rate=spec.learning_rate or p.learning_rate,
        window_fraction=spec.window_fraction or p.window_fraction,
        epochs=spec.epochs or p.epochs,
        stateful=p.stateful if spec.stateful is None else spec.stateful,
        train_on=spec.train_on or p.train_on,
        precision=training_policy(spec.precision or p.precision, p.units),
    )
    if recipe.train_on != TrainOn.WINDOWS and recipe.stateful:
        raise InvalidInputError(
            "whole-tune training starts every tune from a zero state, so it cannot also carry "
            f"state across tunes; ask for --train-on {recipe.train_on} or --stateful, not both"
        )
    return recipe


def window_starts(n_chars: int, seq_len: int, step: int) -> npt.NDArray[np.int64]:
    """Start offsets of every (input, target) window of ``seq_len + 1`` chars."""
    if step < 1:
        raise InvalidInputError(f"window step must be ≥ 1, got {step}")
    last = n_chars - seq_len - 1
    if last < 0:
        return np.zeros(0, np.int64)
    return np.arange(0, last + 1, step, dtype=np.int64)


def sampled_windows(windows: int, fraction: float) -> int:
    """How many of `windows` one epoch trains on with `fraction`."""
    return max(1, math.ceil(windows * fraction))


def window_dataset(
    ids: npt.NDArray[np.int32],
    seq_len: int,
    step: int,
    batch_size: int,
    *,
    shuffle_seed: int | None = None,
    fraction: float = 1.0,
) -> tf.data.Dataset:
    """Batches of (x, y) windows, y = x shifted by one char; shuffled when a seed is given.

    `fraction` < 1 takes a fresh random subset of the windows each epoch (needs a seed): the
    alignments of overlapping windows at the compute of non-overlapping ones.
    """
    starts = window_starts(len(ids), seq_len, step)
    if starts.size == 0:
        raise InvalidInputError(
            f"text of {len(ids)} chars is shorter than one window of {seq_len + 1} chars"
        )
    table = tf.constant(ids, tf.int32)
    offsets = tf.range(seq_len + 1, dtype=tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(starts), seed=shuffle_seed, reshuffle_each_iteration=True)
    if fraction < 1.0:
        if shuffle_seed is None:
            raise InvalidInputError("a window fraction below 1 needs a shuffle seed")
        ds = ds.take(sampled_windows(len(starts), fraction))
    ds = ds.batch(batch_size)

    def cut(s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        w = tf.gather(table, s[:, None] + offsets[None, :])
        return w[:, :-1], w[:, 1:]

    return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def stream_dataset(
    ids: npt.NDArray[np.int32], seq_len: int, batch_size: int
) -> tuple[tf.data.Dataset, int]:
    """Batches for truncated back-propagation through time, and the number of windows.

    The text is cut into `batch_size` contiguous streams; batch k holds window k of every
    stream, so row r of one batch continues row r of the previous one and a stateful LSTM can
    carry its state across them. Each char is seen once per epoch, with all of its left context.
    """
    per_stream = (len(ids) - 1) // batch_size
    n = per_stream // seq_len
    if n < 1:
        raise InvalidInputError(
            f"text of {len(ids)} chars is too short for {batch_size} streams of {seq_len} chars"
        )
    used = batch_size * per_stream
    x = ids[:used].reshape(batch_size, per_stream)[:, : n * seq_len]
    y = ids[1 : used + 1].reshape(batch_size, per_stream)[:, : n * seq_len]
    xs = x.reshape(batch_size, n, seq_len).transpose(1, 0, 2)
    ys = y.reshape(batch_size, n, seq_len).transpose(1, 0, 2)
    return tf.data.Dataset.from_tensor_slices((xs, ys)).prefetch(tf.data.AUTOTUNE), n * batch_size


@dataclass(frozen=True)
class Evaluation:
    bits_per_char: float
    chars: int
    unknown_chars: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "bits_per_char": self.bits_per_char,
            "chars": self.chars,
            "unknown_chars": self.unknown_chars,
        }


def evaluate_ids(
    model: keras.Model, ids: npt.NDArray[np.int32], seq_len: int, batch_size: int = 64
) -> float:
    """Mean cross-entropy in nats per predicted char over non-overlapping windows."""
    ds = window_dataset(ids, seq_len, seq_len, batch_size)
    total, count = 0.0, 0
    for x, y in ds:
        probs = model(x, training=False)
        nll = keras.losses.sparse_categorical_crossentropy(y, probs)
        total += float(tf.reduce_sum(nll))
        count += int(tf.size(nll))
    return total / max(count, 1)


def evaluate_text(model: keras.Model, vocab: Vocab, text: str, seq_len: int = 100) -> Evaluation:
    """Bits/char of `model` on any text; characters outside the vocabulary are counted, skipped."""
    ids, unknown = vocab.encode_lenient(text)
    seq_len = min(seq_len, max(1, len(ids) - 1))
    if len(ids) < 2:
        raise InvalidInputError(
            f"text has {len(ids)} characters the model knows ({unknown} unknown); nothing to score"
        )
    nats = evaluate_ids(model, ids, seq_len)
    return Evaluation(bits_per_char=nats / LN2, chars=len(ids), unknown_chars=unknown)


def run_key(run_id: str, name: str) -> str:
    return f"runs/{check_run_id(run_id)}/{name}"


def load_run(store: ArtifactStore, run_id: str) -> RunRecord:
    key = run_key(run_id, "run.json")
    if not store.exists(key):
        raise NotFoundError(f"no training run {run_id!r}; see `producer train --help`")
    return RunRecord.model_validate_json(store.get_bytes(key))


def save_run(store: ArtifactStore, run: RunRecord) -> None:
    run.updated_at = now()
    store.put_bytes(run_key(run.id, "run.json"), run.model_dump_json(indent=2).encode())


class _Checkpointer(keras.callbacks.Callback):  # type: ignore[misc]  # Keras is untyped
    """Saves the full model and the run record after every epoch; reports progress; cancels."""

    def __init__(
        self,
        store: ArtifactStore,
        run: RunRecord,
        workdir: Path,
        observer: TrainingObserver,
        should_stop: Callable[[], bool] | None,
        validate: Callable[[keras.Model], dict[str, float]],
        stateful: bool,
    ) -> None:
        super().__init__()
        self.store, self.run, self.workdir = store, run, workdir
        self.observer, self.should_stop = observer, should_stop
        self.validate, self.stateful = validate, stateful
        self.cancelled = False
        self._epoch = 0
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._started = time.perf_counter()
        if self.stateful:
            self.model.get_layer(LSTM_LAYER).reset_state()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.observer.on_batch(self._epoch, batch + 1, float((logs or {}).get("loss", math.nan)))
        if self.should_stop is not None and batch % 20 == 0 and self.should_stop():
            self.cancelled = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.cancelled:
            return
        logs = dict(logs or {})
        seconds = time.perf_counter() - self._started
        metrics = {
            "epoch": float(epoch + 1),
            "loss": float(logs.get("loss", math.nan)),
            **self.validate(self.model),
            "seconds": seconds,
        }
        path = self.workdir / "checkpoint.keras"
        self.model.save(path)
        sha = file_sha256(path)
        self.store.put_file(run_key(self.run.id, "checkpoint.keras"), path)
        self.run.epochs_done = epoch + 1
        self.run.checkpoint_sha256 = sha
        self.run.history.append(metrics)
        save_run(self.store, self.run)  # record last: it names a checkpoint that exists
        self.observer.on_epoch(epoch + 1, metrics)


def _restore(store: ArtifactStore, run: RunRecord, workdir: Path) -> keras.Model:
    if run.checkpoint_sha256 is None:
        raise IntegrityError(f"run {run.id} has epochs done but no checkpoint hash")
    path = workdir / "resume.keras"
    store.get_file(run_key(run.id, "checkpoint.keras"), path)
    return load_verified(path, run.checkpoint_sha256, compile=True)


def train(
    store: ArtifactStore,
    spec: TrainSpec,
    run_id: str,
    *,
    observer: TrainingObserver | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> ModelRecord:
    """Train (or resume) run `run_id` and register the resulting model.

    With `resume`, an existing run continues after its last checkpointed epoch with the spec it
    was started with; without it, an existing run id is an error (ids are never reused).
    """
    observer = observer or SilentObserver()
    recipe = resolve_recipe(spec)
    corpus = load_corpus(store, spec.corpus)
    existing = store.exists(run_key(run_id, "run.json"))
    if resume and existing:
        run = load_run(store, run_id)
        if run.status == RunStatus.DONE and run.model_id:
            raise InvalidInputError(f"run {run_id} already finished as model {run.model_id[:12]}")
        spec = run.spec
        recipe = resolve_recipe(spec)
    elif existing:
        raise InvalidInputError(f"run {run_id} exists; pass --resume {run_id} to continue it")
    else:
        run = RunRecord(id=run_id, spec=spec)
    run.status = RunStatus.RUNNING
    run.error = None
    save_run(store, run)

    train_text = corpus.train_text
    if spec.max_train_chars is not None:
        train_text = train_text[: spec.max_train_chars]
    train_ids = corpus.vocab.encode(train_text)
    valid_ids = corpus.vocab.encode(corpus.valid_text or corpus.train_text[-20_000:])
    keras.utils.set_random_seed(spec.seed)
    callbacks: list[keras.callbacks.Callback] = []
    carry = recipe.stateful or recipe.train_on == TrainOn.STREAMS  # a stateful training model
    if recipe.train_on == TrainOn.TUNES:
        tunes, _ = encode_tunes(corpus_tunes(train_text), corpus.vocab)
        train_ds, steps, epoch_chars = tune_batches(tunes, recipe.batch_size, spec.seed)
    elif recipe.train_on == TrainOn.STREAMS:
        tunes, _ = encode_tunes(corpus_tunes(train_text), corpus.vocab)
        streams = tune_streams(tunes, recipe.seq_len, recipe.batch_size, spec.seed)
        train_ds, steps, epoch_chars = streams.dataset, streams.steps, streams.chars
        callbacks.append(StreamResetter(LSTM_LAYER, streams.resets))
    elif recipe.stateful:
        train_ds, windows = stream_dataset(train_ids, recipe.seq_len, recipe.batch_size)
        steps, epoch_chars = math.ceil(windows / recipe.batch_size), windows * recipe.seq_len
    else:
        train_ds = window_dataset(
            train_ids, recipe.seq_len, recipe.window_step, recipe.batch_size,
            shuffle_seed=spec.seed, fraction=recipe.window_fraction,
        )  # fmt: skip
        windows = sampled_windows(
            len(window_starts(len(train_ids), recipe.seq_len, recipe.window_step)),
            recipe.window_fraction,
        )
        steps, epoch_chars = math.ceil(windows / recipe.batch_size), windows * recipe.seq_len
    valid_seq = min(recipe.seq_len, len(valid_ids) - 2)
    valid_tunes, _ = encode_tunes(
        corpus_tunes(corpus.valid_text or corpus.train_text[-20_000:]), corpus.vocab
    )

    def validate(model: keras.Model) -> dict[str, float]:
        """Validation scores, always by a float32 stateless copy, so every variant (stateful or
        not, windows or tunes, any precision) is measured the same way: `val_loss`, nats/char
        over whole tunes from a zero state (how the sampler runs the model, the score a model
        is judged by), and bits/char over zero-state windows of `seq_len` chars for
        comparison with older models."""
        scorer = build_model(len(corpus.vocab), recipe.embedding_dim, recipe.units)
        scorer.set_weights(model.get_weights())
        whole = score_tunes(scorer, valid_tunes)
        windowed = evaluate_ids(scorer, valid_ids, valid_seq, recipe.batch_size)
        return {
            "val_loss": whole.nats_per_char,
            "val_bits_per_char": whole.bits_per_char,
            "val_window_bits_per_char": windowed / LN2,
        }

    with tempfile.TemporaryDirectory(prefix="tunebatch-train-") as tmp:
        workdir = Path(tmp)
        if run.epochs_done > 0:
            model = _restore(store, run, workdir)
            log.info("resuming run %s after epoch %d", run.id, run.epochs_done)
        else:
            model = build_model(
                len(corpus.vocab),
                recipe.embedding_dim,
                recipe.units,
                dtype_policy=recipe.dtype_policy,
                stateful_batch=recipe.batch_size if carry else None,
            )
            model.compile(
                optimizer=keras.optimizers.Adam(recipe.learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(),
            )
        observer.on_start(run.id, recipe.epochs, steps, run.epochs_done)
        checkpointer = _Checkpointer(store, run, workdir, observer, should_stop, validate, carry)
        if run.epochs_done < recipe.epochs:
            model.fit(
                train_ds,
                epochs=recipe.epochs,
                initial_epoch=run.epochs_done,
                callbacks=[*callbacks, checkpointer],
                shuffle=False,  # the dataset shuffles itself, seeded
                verbose=0,
            )
        if checkpointer.cancelled:
            run.status = RunStatus.CANCELLED
            save_run(store, run)
            raise CancelledError(
                f"training run {run.id} cancelled after epoch {run.epochs_done}; "
                f"resume with --resume {run.id}"
            )
        final = run.history[-1] if run.history else {}
        path = workdir / "model.keras"
        save_inference_model(model, path)
        record = register_model(
            store,
            path,
            {
                "preset": recipe.name,
                "vocab_size": len(corpus.vocab),
                "embedding_dim": recipe.embedding_dim,
                "units": recipe.units,
                "chars": list(corpus.vocab.chars),
                "corpus": corpus.record.name,
                "corpus_sha256": corpus.record.sha256,
                "epochs": run.epochs_done,
                "seq_len": recipe.seq_len,
                "window_step": recipe.window_step,
                "window_fraction": recipe.window_fraction,
                "batch_size": recipe.batch_size,
                "learning_rate": recipe.learning_rate,
                "stateful": recipe.stateful,
                "train_on": recipe.train_on,
                "precision": recipe.precision,
                "train_loss": final.get("loss"),
                "valid_loss": final.get("val_loss"),
                "valid_bits_per_char": final.get("val_bits_per_char"),
                "valid_scored_on": TrainOn.TUNES,
                "valid_window_bits_per_char": final.get("val_window_bits_per_char"),
                "history": run.history,
                # Summed per epoch, so time before a resume counts too.
                "train_seconds": sum(h.get("seconds", 0.0) for h in run.history),
                "chars_processed": epoch_chars * run.epochs_done,
                "run_id": run.id,
                "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            },
        )
    run.status = RunStatus.DONE
    run.model_id = record.id
    save_run(store, run)
    return record
