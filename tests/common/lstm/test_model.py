"""Model construction, hash-checked files and the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from common.errors import IntegrityError, InvalidInputError, NotFoundError
from common.lstm.network import (
    architecture,
    build_model,
    load_registered,
    load_verified,
    save_inference_model,
)
from common.lstm.registry import list_models, model_file, model_key, resolve_model
from common.params import TrainOn
from common.presets import PRESETS, Preset, get_preset
from common.store.local import LocalStore
from tests.model_fixtures import TinyEnv


def test_presets_keep_the_original_recipe_and_default_to_a_fifth_of_its_compute() -> None:
    original, seed = PRESETS["original"], PRESETS["seed"]
    assert (original.embedding_dim, original.units, original.seq_len) == (512, 2048, 100)
    assert (original.window_step, original.batch_size, original.epochs) == (10, 128, 5)
    assert (original.learning_rate, original.precision) == (1e-3, "float32")
    # The default keeps the architecture and trains with at most a fifth of the char positions.
    assert (seed.embedding_dim, seed.units, seed.seq_len) == (512, 2048, 100)

    def passes(p: Preset) -> float:  # times each char goes through the network, all epochs
        return p.seq_len / p.window_step * p.window_fraction * p.epochs * (1 + p.transpose_copies)

    assert passes(seed) <= passes(original) / 5
    assert passes(PRESETS["small"]) <= passes(original) / 5
    assert {"seed", "original", "small", "tiny"} <= set(PRESETS)
    # Windows beat whole-tune training on the whole-tune score at equal char positions
    # (README, bench/training.py --whole-tunes); `original` keeps its recipe whatever wins.
    assert original.train_on == TrainOn.WINDOWS and not original.stateful
    assert seed.train_on == PRESETS["small"].train_on == TrainOn.WINDOWS
    with pytest.raises(InvalidInputError, match="unknown preset"):
        get_preset("huge")


def test_build_model_outputs_a_distribution_per_position() -> None:
    model = build_model(30, 8, 16)
    assert architecture(model) == (30, 8, 16)
    probs = model.predict(np.zeros((2, 7), np.int32), verbose=0)
    assert probs.shape == (2, 7, 30)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(InvalidInputError):
        build_model(1, 8, 16)


def test_saved_model_loads_only_with_its_hash(tmp_path: Path) -> None:
    model = build_model(12, 4, 8)
    path = tmp_path / "m.keras"
    sha = save_inference_model(model, path)
    loaded = load_verified(path, sha)
    x = np.arange(5, dtype=np.int32)[None] % 12
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(IntegrityError, match="refusing to load"):
        load_verified(path, "0" * 64)
    with path.open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(IntegrityError):
        load_verified(path, sha)


def test_registry_resolves_ids_prefixes_and_latest(tiny_env: TinyEnv) -> None:
    record = tiny_env.model
    assert resolve_model(tiny_env.store, "latest").id == record.id
    assert resolve_model(tiny_env.store, record.id[:8]).id == record.id
    assert resolve_model(tiny_env.store, record.id).id == record.id
    assert record.id in [m.id for m in list_models(tiny_env.store)]
    with pytest.raises(NotFoundError):
        resolve_model(tiny_env.store, "abcdef12")
    with pytest.raises(InvalidInputError):
        resolve_model(tiny_env.store, "xyz")
    with pytest.raises(NotFoundError, match="train one"):
        resolve_model(tiny_env.store, "latest", corpus="other")


def test_tampered_registered_model_is_refused(tiny_env: TinyEnv, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for key in tiny_env.store.list("models/"):
        store.put_bytes(key, tiny_env.store.get_bytes(key))
    _, _, vocab = load_registered(store, tiny_env.model.id, tmp_path / "cache")
    assert len(vocab) == tiny_env.model.vocab_size
    path = store.local_path(model_key(tiny_env.model.id, "keras"))
    assert path is not None
    shutil.copyfile(path, tmp_path / "orig.keras")
    with path.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(IntegrityError, match="changed after registration"):
        model_file(store, tiny_env.model, tmp_path / "cache")
    with pytest.raises(IntegrityError):
        load_registered(store, tiny_env.model.id, tmp_path / "cache")


def test_a_registered_model_is_hashed_once_before_it_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In place, from a cache or downloaded (the store's copy hashes as it writes): one pass."""
    from common import files
    from common.lstm import network, registry
    from common.lstm.registry import register_model

    class Bucket(LocalStore):  # a store whose files are not local: they are downloaded
        def local_path(self, key: str) -> Path | None:
            return None

    path = tmp_path / "m.keras"
    save_inference_model(build_model(12, 4, 8), path)
    store = LocalStore(tmp_path / "store")
    record = register_model(store, path, {
        "preset": "tiny", "vocab_size": 12, "embedding_dim": 4, "units": 8,
        "chars": list("abcdefghij\n:"), "corpus": "c", "corpus_sha256": "0" * 64, "epochs": 1,
        "seq_len": 8, "window_step": 8, "batch_size": 2, "learning_rate": 0.01,
    })  # fmt: skip
    passes: list[Path] = []

    def counting(p: Path) -> str:
        passes.append(p)
        return files.file_sha256(p)

    monkeypatch.setattr(registry, "file_sha256", counting)
    monkeypatch.setattr(network, "file_sha256", counting)
    bucket = Bucket(tmp_path / "store")
    for where, expected in ((store, 1), (bucket, 0), (bucket, 1)):  # in place, download, cache
        passes.clear()
        load_registered(where, record.id, tmp_path / "cache")
        assert len(passes) == expected, (where, passes)
