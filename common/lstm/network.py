"""The character LSTM: presets, construction from explicit arguments, and hash-checked files.

A model file is only ever loaded after its SHA-256 matches the id it was registered under, and
only through Keras' safe mode (no Lambda layers, no pickle), because model files travel through
buckets and caches that other people can write to.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras

from common.abc.vocab import Vocab
from common.errors import IntegrityError, InvalidInputError, NotFoundError
from common.files import file_sha256
from common.lstm.registry import model_file, resolve_model
from common.schemas import ModelRecord, TrainOn
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

EMBEDDING_LAYER = "embedding"
LSTM_LAYER = "lstm"
HEAD_LAYER = "head"


@dataclass(frozen=True)
class Preset:
    """Architecture and training recipe under one name, so a result can be reproduced by name."""

    name: str
    embedding_dim: int
    units: int
    seq_len: int
    window_step: int
    batch_size: int
    epochs: int
    learning_rate: float
    description: str
    stateful: bool = False
    precision: str = "float32"
    #: Share of the windows one epoch trains on, a fresh random subset each epoch: with windows
    #: every 10 chars and 0.1, each char is seen about once an epoch, in every alignment.
    window_fraction: float = 1.0
    #: Windows of `seq_len` chars, or whole tunes (`batch_size` tunes of similar length a step).
    train_on: TrainOn = TrainOn.WINDOWS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def dtype_policy(self) -> str | None:
        """The Keras dtype policy to train with (None = the float32 default)."""
        return None if self.precision == "float32" else self.precision


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # The default architecture, trained the way bench/training.py measured best on the small
        # architecture: windows that do not overlap (each char once an epoch), a quarter of the
        # original's batch. At Adam 2e-3 that reached the original recipe's validation bits/char
        # in 10 epochs (1/5 of its char positions), at 3e-3 in 6; the 16x larger model keeps
        # the more cautious rate. The `original` preset keeps the recipe itself. Scored over
        # whole tunes (as the sampler runs the model), these windows also beat training on whole
        # tunes or tune streams at equal char positions (README), so they stay the default.
        Preset(
            name="seed",
            embedding_dim=512,
            units=2048,
            seq_len=100,
            window_step=100,
            batch_size=32,
            epochs=10,
            learning_rate=2e-3,
            precision="auto",
            description="Embedding 512, LSTM 2048 (the original architecture), non-overlapping "
            "windows, batch 32, 10 epochs: 1/5 of the original recipe's compute; for a GPU.",
        ),
        Preset(
            name="original",
            embedding_dim=512,
            units=2048,
            seq_len=100,
            window_step=10,
            batch_size=128,
            epochs=5,
            learning_rate=1e-3,
            description="The original recipe, to reproduce it: windows of 100 every 10 chars "
            "(each char 10 times an epoch), batch 128, Adam 1e-3, 5 epochs.",
        ),
        Preset(
            name="small",
            embedding_dim=64,
            units=512,
            seq_len=100,
            window_step=100,
            batch_size=32,
            epochs=7,
            learning_rate=3e-3,
            precision="auto",
            description="The seed recipe at a size that trains in minutes on a laptop CPU; the "
            "demo's model.",
        ),
        Preset(
            name="tiny",
            embedding_dim=16,
            units=64,
            seq_len=64,
            window_step=32,
            batch_size=32,
            epochs=2,
            learning_rate=1e-2,
            description="Seconds on CPU; for tests and smoke runs, not for music.",
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}"
        ) from None


def build_model(
    vocab_size: int,
    embedding_dim: int,
    units: int,
    *,
    dtype_policy: str | None = None,
    stateful_batch: int | None = None,
) -> keras.Model:
    """Embedding → LSTM (return_sequences) → Dense softmax over the characters.

    Built from explicit arguments, not a preset, so tests and benchmarks can make any size.
    Layer names are fixed: the sampler finds the weights it shares by these names.
    `stateful_batch` makes a training model for truncated back-propagation through time: the
    LSTM keeps its state between batches of `stateful_batch` parallel text streams.
    """
    if vocab_size < 2 or embedding_dim < 1 or units < 1:
        raise InvalidInputError(
            f"model sizes must be positive (vocab {vocab_size}, embedding {embedding_dim}, "
            f"units {units})"
        )
    kwargs: dict[str, Any] = {"dtype": dtype_policy} if dtype_policy else {}
    if stateful_batch is not None:
        inputs = keras.Input(batch_shape=(stateful_batch, None), dtype="int32", name="chars")
    else:
        inputs = keras.Input(shape=(None,), dtype="int32", name="chars")
    x = keras.layers.Embedding(vocab_size, embedding_dim, name=EMBEDDING_LAYER, **kwargs)(inputs)
    x = keras.layers.LSTM(
        units,
        return_sequences=True,
        stateful=stateful_batch is not None,
        name=LSTM_LAYER,
        **kwargs,
    )(x)
    # The softmax is computed in float32 whatever the policy: probabilities need the range.
    outputs = keras.layers.Dense(
        vocab_size, activation="softmax", name=HEAD_LAYER, dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="char_lstm")


def architecture(model: keras.Model) -> tuple[int, int, int]:
    """(vocab_size, embedding_dim, units) of a model built by `build_model`."""
    try:
        emb = model.get_layer(EMBEDDING_LAYER)
        lstm = model.get_layer(LSTM_LAYER)
        model.get_layer(HEAD_LAYER)
    except ValueError as exc:
        raise InvalidInputError(
            f"model {model.name!r} is not a tunebatch char-LSTM (layers embedding/lstm/head): {exc}"
        ) from exc
    return int(emb.input_dim), int(emb.output_dim), int(lstm.units)


def save_inference_model(model: keras.Model, path: Path) -> str:
    """Save weights and architecture only (no optimizer state) and return the file's SHA-256.

    The optimizer triples the file of a trained model and is useless for sampling; training
    checkpoints keep it (see `training`).
    """
    vocab_size, embedding_dim, units = architecture(model)
    clean = build_model(vocab_size, embedding_dim, units)
    clean.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    clean.save(path)
    return file_sha256(path)


def load_verified(path: Path, expected_sha256: str, *, compile: bool = False) -> keras.Model:
    """Load a `.keras` file only if its SHA-256 is the one it was registered with."""
    if not path.is_file():
        raise NotFoundError(f"model file {path} does not exist")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise IntegrityError(
            f"model file {path} has SHA-256 {actual[:16]}…, but its record says "
            f"{expected_sha256[:16]}…; refusing to load a file that was changed or replaced"
        )
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises plain ValueError/TypeError for bad archives
        raise InvalidInputError(f"model file {path} could not be loaded: {exc}") from exc
    architecture(model)
    return model


def load_registered(
    store: ArtifactStore, ref: str, cache_dir: Path, *, corpus: str | None = None
) -> tuple[ModelRecord, keras.Model, Vocab]:
    """Resolve a model reference, fetch and verify its file, and load it with its vocabulary."""
    record = resolve_model(store, ref, corpus=corpus)
    path = model_file(store, record, cache_dir)
    model = load_verified(path, record.id)
    return record, model, Vocab(tuple(record.chars))
