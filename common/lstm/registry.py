"""The model registry: which models exist, what made them, and where their verified file is.

A model's id is the SHA-256 of its ``.keras`` file, so a record can only ever describe one file,
and a cached or downloaded copy is trusted only after its hash is recomputed. This module has no
TensorFlow in it so that the producer can list and resolve models instantly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from common.errors import IntegrityError, InvalidInputError, NotFoundError
from common.files import file_sha256
from common.schemas import ModelRecord, check_sha256
from common.store.base import ArtifactStore

log = logging.getLogger(__name__)

LATEST = "latest"


def model_key(model_id: str, ext: str) -> str:
    return f"models/{check_sha256(model_id)}.{ext}"


def register_model(store: ArtifactStore, path: Path, fields: dict[str, Any]) -> ModelRecord:
    """Upload a saved model and its record; the id is the file's hash."""
    model_id = file_sha256(path)
    record = ModelRecord(id=model_id, **fields)
    store.put_file(model_key(model_id, "keras"), path)
    # The record goes last: a model is listed only once its file is in place.
    store.put_bytes(model_key(model_id, "json"), record.model_dump_json(indent=2).encode())
    log.info("registered model %s (%s on %s)", record.short_id, record.preset, record.corpus)
    return record


def list_models(store: ArtifactStore) -> list[ModelRecord]:
    """All registered models, newest first."""
    records = [
        ModelRecord.model_validate_json(store.get_bytes(key))
        for key in store.list("models/")
        if key.endswith(".json")
    ]
    return sorted(records, key=lambda r: r.created_at, reverse=True)


def resolve_model(store: ArtifactStore, ref: str, *, corpus: str | None = None) -> ModelRecord:
    """A model by full id, unique id prefix (≥ 6 hex chars) or ``latest`` (per corpus if given)."""
    ref = ref.strip().lower()
    if len(ref) == 64:
        key = model_key(ref, "json")
        if not store.exists(key):
            raise NotFoundError(f"no model {ref[:12]}… is registered; see `producer model list`")
        return ModelRecord.model_validate_json(store.get_bytes(key))
    models = list_models(store)
    if corpus is not None:
        models = [m for m in models if m.corpus == corpus]
    if ref == LATEST:
        if not models:
            where = f" for corpus {corpus!r}" if corpus else ""
            raise NotFoundError(f"no model is registered{where}; train one with `producer train`")
        return models[0]
    if len(ref) < 6 or any(c not in "0123456789abcdef" for c in ref):
        raise InvalidInputError(
            f"{ref!r} is not a model reference: give 'latest' or at least 6 hex chars of an id"
        )
    matches = [m for m in models if m.id.startswith(ref)]
    if not matches:
        raise NotFoundError(f"no model id starts with {ref!r}; see `producer model list`")
    if len(matches) > 1:
        raise InvalidInputError(f"{ref!r} matches {len(matches)} models; give more characters")
    return matches[0]


def model_file(store: ArtifactStore, record: ModelRecord, cache_dir: Path) -> Path:
    """A local, hash-verified copy of the model file, fetched at most once per cache.

    A local store's file is used in place; a bucket's file is downloaded into the cache. Either
    way the file is hashed once, before TensorFlow ever opens it: a cached copy by reading it, a
    download as it is written (`ArtifactStore.get_file` returns the hash). A cached copy whose
    hash is not the id is fetched again; any other file whose hash is not the id is refused.
    """
    key = model_key(record.id, "keras")
    local = store.local_path(key)
    if local is None:
        local = cache_dir / "models" / f"{record.id}.keras"
        if local.is_file() and file_sha256(local) == record.id:
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        actual = store.get_file(key, local).sha256
    elif local.is_file():
        actual = file_sha256(local)
    else:
        raise NotFoundError(f"model {record.short_id} is registered but its file is missing")
    if actual != record.id:
        raise IntegrityError(
            f"model file {local} has SHA-256 {actual[:12]}…, not {record.short_id}…: it was "
            "changed after registration; refusing to load it"
        )
    return local
