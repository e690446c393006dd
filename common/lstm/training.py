"""Training of the char-LSTM, with a checkpoint every epoch and resume after a kill.

A training run is a record (``runs/<run_id>/run.json``) plus a checkpoint
(``runs/<run_id>/checkpoint.keras``, optimizer state included) in the artifact store. Both are
rewritten after every epoch, record last, so a run killed at any moment resumes from the last
complete epoch; the checkpoint's hash is in the record and is checked before it is loaded.

One run: the recipe resolved for this machine (`resolve_recipe`), the epochs' data in the
recipe's unit (windows, `common.lstm.windows`, or whole tunes, `common.lstm.wholetune`), the
validation, the fit with the checkpointer, and the registration. Whatever the unit, the validation
score is bits/char over whole validation tunes from a zero state, as the sampler runs the model.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import keras
import tensorflow as tf

from common.abc.corpus import Corpus, load_corpus
from common.abc.vocab import Vocab
from common.errors import CancelledError, IntegrityError, InvalidInputError, NotFoundError
from common.files import file_sha256
from common.lstm.augment import augment_text
from common.lstm.network import LSTM_LAYER, build_model, load_verified, save_inference_model
from common.lstm.precision import training_policy
from common.lstm.registry import register_model
from common.lstm.wholetune import (
    StreamResetter,
    TuneScorer,
    corpus_tunes,
    encode_tunes,
    tune_batches,
    tune_streams,
)
from common.lstm.windows import (
    LN2,
    evaluate_ids,
    sampled_windows,
    stream_dataset,
    window_dataset,
    window_starts,
)
from common.params import Recipe, TrainOn
from common.presets import get_preset
from common.schemas import ModelRecord, RunRecord, RunStatus, TrainSpec, check_run_id, now
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)


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


def resolve_recipe(spec: TrainSpec) -> Recipe:
    """The preset's recipe with the spec's overrides applied: the parameters of one run, with
    the precision resolved to a Keras policy for this machine (so call it where the training
    runs)."""
    preset = get_preset(spec.preset)
    fields = {**preset.model_dump(include=set(Recipe.model_fields)), **spec.overrides()}
    fields["precision"] = training_policy(fields["precision"], preset.units)
    recipe = Recipe.model_validate(fields)
    if recipe.train_on != TrainOn.WINDOWS and recipe.stateful:
        raise InvalidInputError(
            "whole-tune training starts every tune from a zero state, so it cannot also carry "
            f"state across tunes; ask for --train-on {recipe.train_on} or --stateful, not both"
        )
    return recipe


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


@dataclass(frozen=True)
class _Epochs:
    """What one epoch trains on: the batches, their number and the char positions they hold,
    and the callbacks the dataset needs (state resets between tune streams)."""

    dataset: tf.data.Dataset
    steps: int
    chars: int
    callbacks: list[keras.callbacks.Callback]


def _epochs(train_text: str, vocab: Vocab, recipe: Recipe, seed: int) -> _Epochs:
    """The training data in the recipe's unit: windows, tunes, tune streams or text streams,
    with the recipe's transposed copies of each tune."""
    if recipe.transpose_copies:
        augmented = augment_text(train_text, recipe.transpose_copies, vocab, seed)
        log.info(
            "key augmentation: %d tunes + %d transposed copies (%d not made)",
            augmented.tunes, augmented.copies, augmented.skipped,
        )  # fmt: skip
        train_text = augmented.text
    if recipe.train_on == TrainOn.TUNES:
        tunes, _ = encode_tunes(corpus_tunes(train_text), vocab)
        return _Epochs(*tune_batches(tunes, recipe.batch_size, seed), callbacks=[])
    if recipe.train_on == TrainOn.STREAMS:
        tunes, _ = encode_tunes(corpus_tunes(train_text), vocab)
        streams = tune_streams(tunes, recipe.seq_len, recipe.batch_size, seed)
        resetter = StreamResetter(LSTM_LAYER, streams.resets)
        return _Epochs(streams.dataset, streams.steps, streams.chars, [resetter])
    ids = vocab.encode(train_text)
    if recipe.stateful:
        dataset, windows = stream_dataset(ids, recipe.seq_len, recipe.batch_size)
    else:
        dataset = window_dataset(
            ids, recipe.seq_len, recipe.window_step, recipe.batch_size,
            shuffle_seed=seed, fraction=recipe.window_fraction,
        )  # fmt: skip
        windows = sampled_windows(
            len(window_starts(len(ids), recipe.seq_len, recipe.window_step)),
            recipe.window_fraction,
        )
    return _Epochs(
        dataset, math.ceil(windows / recipe.batch_size), windows * recipe.seq_len, callbacks=[]
    )


def _validator(
    valid_text: str, vocab: Vocab, recipe: Recipe
) -> Callable[[keras.Model], dict[str, float]]:
    """Validation scores, always by a float32 stateless copy, so every variant (stateful or not,
    windows or tunes, any precision) is measured the same way: `val_loss`, nats/char over whole
    tunes from a zero state (how the sampler runs the model, the score a model is judged by),
    and bits/char over zero-state windows of `seq_len` chars for comparison with models scored
    that way."""
    valid_ids = vocab.encode(valid_text)
    valid_seq = min(recipe.seq_len, len(valid_ids) - 2)
    valid_tunes, _ = encode_tunes(corpus_tunes(valid_text), vocab)

    scorer = build_model(len(vocab), recipe.embedding_dim, recipe.units)
    score = TuneScorer(scorer)

    def validate(model: keras.Model) -> dict[str, float]:
        scorer.set_weights(model.get_weights())
        whole = score(valid_tunes)
        windowed = evaluate_ids(scorer, valid_ids, valid_seq, recipe.batch_size)
        return {
            "val_loss": whole.nats_per_char,
            "val_bits_per_char": whole.bits_per_char,
            "val_window_bits_per_char": windowed / LN2,
        }

    return validate


def _open_run(store: ArtifactStore, spec: TrainSpec, run_id: str, *, resume: bool) -> RunRecord:
    """The run record, new or (with `resume`) the existing one, marked running."""
    existing = store.exists(run_key(run_id, "run.json"))
    if resume and existing:
        run = load_run(store, run_id)
        if run.status == RunStatus.DONE and run.model_id:
            raise InvalidInputError(f"run {run_id} already finished as model {run.model_id[:12]}")
    elif existing:
        raise InvalidInputError(f"run {run_id} exists; pass --resume {run_id} to continue it")
    else:
        run = RunRecord(id=run_id, spec=spec)
    run.status = RunStatus.RUNNING
    run.error = None
    save_run(store, run)
    return run


def _new_model(vocab_size: int, recipe: Recipe) -> keras.Model:
    """A compiled training model; stateful (a fixed batch) when the state is carried."""
    carry = recipe.stateful or recipe.train_on == TrainOn.STREAMS
    model = build_model(
        vocab_size,
        recipe.embedding_dim,
        recipe.units,
        dtype_policy=recipe.dtype_policy,
        stateful_batch=recipe.batch_size if carry else None,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(recipe.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    return model


def _register(
    store: ArtifactStore,
    path: Path,
    corpus: Corpus,
    spec: TrainSpec,
    recipe: Recipe,
    run: RunRecord,
    epoch_chars: int,
) -> ModelRecord:
    """Register the saved model at `path` with its recipe, data, scores and provenance."""
    final = run.history[-1] if run.history else {}
    return register_model(
        store,
        path,
        {
            **recipe.model_dump(),
            "epochs": run.epochs_done,
            "preset": spec.preset,
            "vocab_size": len(corpus.vocab),
            "chars": list(corpus.vocab.chars),
            "corpus": corpus.record.name,
            "corpus_sha256": corpus.record.sha256,
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
    was started with; without it, an existing run id is an error (ids are never reused). A bad
    spec or a missing corpus fails before the run record is written.
    """
    observer = observer or SilentObserver()
    resolve_recipe(spec)
    corpus = load_corpus(store, spec.corpus)
    run = _open_run(store, spec, run_id, resume=resume)
    spec = run.spec
    recipe = resolve_recipe(spec)
    train_text = corpus.train_text[: spec.max_train_chars]
    valid_text = corpus.valid_text or corpus.train_text[-20_000:]
    keras.utils.set_random_seed(spec.seed)
    epochs = _epochs(train_text, corpus.vocab, recipe, spec.seed)
    validate = _validator(valid_text, corpus.vocab, recipe)
    carry = recipe.stateful or recipe.train_on == TrainOn.STREAMS

    with tempfile.TemporaryDirectory(prefix="tunebatch-train-") as tmp:
        workdir = Path(tmp)
        if run.epochs_done > 0:
            model = _restore(store, run, workdir)
            log.info("resuming run %s after epoch %d", run.id, run.epochs_done)
        else:
            model = _new_model(len(corpus.vocab), recipe)
        observer.on_start(run.id, recipe.epochs, epochs.steps, run.epochs_done)
        checkpointer = _Checkpointer(store, run, workdir, observer, should_stop, validate, carry)
        if run.epochs_done < recipe.epochs:
            model.fit(
                epochs.dataset,
                epochs=recipe.epochs,
                initial_epoch=run.epochs_done,
                callbacks=[*epochs.callbacks, checkpointer],
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
        path = workdir / "model.keras"
        save_inference_model(model, path)
        record = _register(store, path, corpus, spec, recipe, run, epochs.chars)
    run.status = RunStatus.DONE
    run.model_id = record.id
    save_run(store, run)
    return record
