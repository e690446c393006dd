"""The character LSTM: construction from explicit arguments, and hash-checked files.

A model file is only ever loaded after its SHA-256 matches the id it was registered under, and
only through Keras' safe mode (no Lambda layers, no pickle), because model files travel through
buckets and caches that other people can write to.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras

from common.abc.vocab import Vocab
from common.errors import IntegrityError, InvalidInputError, NotFoundError
from common.files import file_sha256
from common.lstm.registry import model_file, resolve_model
from common.schemas import ModelRecord
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

EMBEDDING_LAYER = "embedding"
LSTM_LAYER = "lstm"
HEAD_LAYER = "head"


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
    return _open(path, compile=compile)


def _open(path: Path, *, compile: bool = False) -> keras.Model:
    """Open a `.keras` file whose hash the caller has just checked, in Keras' safe mode."""
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # Keras raises plain ValueError/TypeError for bad archives
        raise InvalidInputError(f"model file {path} could not be loaded: {exc}") from exc
    architecture(model)
    return model


def load_registered(
    store: ArtifactStore, ref: str, cache_dir: Path, *, corpus: str | None = None
) -> tuple[ModelRecord, keras.Model, Vocab]:
    """Resolve a model reference, fetch and verify its file, and load it with its vocabulary.

    The file is hashed once, by `model_file`, between fetching and opening it.
    """
    record = resolve_model(store, ref, corpus=corpus)
    model = _open(model_file(store, record, cache_dir))
    return record, model, Vocab(tuple(record.chars))
