"""A batch's life as plain functions: the job context, its keys, create, cancel and retry.

The jobs themselves are one module each: `common.jobs.generate` (sample a chunk),
`common.jobs.rendering` (render a tune), `common.jobs.finalize` (write the manifest). Celery tasks
and the embedded runner call exactly these functions, so there is one code path to test. Every
function is idempotent — it reads the records first and skips work already done — and
ends each tune in exactly one final state (done, failed or cancelled). Tune ids are positions in
the batch and the random stream of a tune depends only on (seed, index, try), so a re-run rewrites
the same keys with the same bytes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common.abc import notation as abc_notation
from common.errors import InvalidTransitionError, NotFoundError
from common.jobs import cancel as cancelling
from common.jobs.request_checks import check_batch_spec
from common.lstm.registry import resolve_model
from common.schemas import (
    BatchRecord,
    BatchSpec,
    ModelRecord,
    TuneRecord,
    TuneStatus,
    new_batch_id,
    tune_id,
)
from common.settings import Settings
from common.state.base import JobRecords
from common.store.base import ArtifactStore

if TYPE_CHECKING:
    from common.abc.corpus import Corpus
    from common.lstm.music_rules import MusicRules
    from common.lstm.sampler import Sampler
    from common.quality.similarity import MelodyIndex

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every job needs; built once per process from the settings."""

    settings: Settings
    store: ArtifactStore
    records: JobRecords
    _samplers: dict[tuple[str, str], tuple[ModelRecord, Sampler]] = field(default_factory=dict)
    _indexes: dict[str, MelodyIndex | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Told (chars, seconds) after each chunk's sampling; the workers feed their metrics.
    on_sampled: Callable[[int, float], None] | None = None

    def melody_index(self, model: ModelRecord) -> MelodyIndex | None:
        """The melody index of the model's training tunes, loaded or built once per process.

        None (no copy check) when the model's corpus is not in this store.
        """
        from common.abc.corpus import load_corpus

        with self._lock:
            if model.corpus_sha256 not in self._indexes:
                try:
                    corpus = load_corpus(self.store, model.corpus)
                except NotFoundError:
                    log.warning("corpus %s of model %s is not in the store: no copy check",
                                model.corpus, model.short_id)  # fmt: skip
                    self._indexes[model.corpus_sha256] = None
                else:
                    if corpus.record.sha256 != model.corpus_sha256:
                        log.warning("corpus %s changed since model %s was trained; the copy "
                                    "check uses today's", model.corpus, model.short_id)  # fmt: skip
                    self._indexes.clear()  # one corpus at a time, like the samplers
                    self._indexes[model.corpus_sha256] = self._build_index(corpus)
            return self._indexes[model.corpus_sha256]

    def sampler(self, model_id: str, precision: str = "auto") -> tuple[ModelRecord, Sampler]:
        """The model's sampler, loaded (hash-checked) once per process and kept."""
        from common.lstm import precision as precisions
        from common.lstm.network import load_registered
        from common.lstm.sampler import Sampler

        resolved = precisions.resolve(precision)
        with self._lock:
            if (model_id, resolved) not in self._samplers:
                record, model, vocab = load_registered(
                    self.store, model_id, self.settings.cache_path
                )
                self._samplers.clear()  # one model at a time: a seed model is 100+ MB
                self._samplers[model_id, resolved] = (
                    record,
                    Sampler(
                        model,
                        vocab,
                        batch_size=self.settings.sample_batch_size,
                        steps_per_call=self.settings.steps_per_call,
                        precision=resolved,
                        music=self._music_rules(record),
                    ),
                )
            return self._samplers[model_id, resolved]

    def _music_rules(self, model: ModelRecord) -> MusicRules:
        """The limits of the model's corpus for the tracker's music rules, learned once and kept
        beside the corpus (reading 11,000 tunes takes ~30 s); O'Neill's when it is not here."""
        from common.abc.corpus import corpus_key, load_corpus
        from common.lstm.music_rules import DEFAULT_RULES, MusicRules, learn_music_rules

        key = corpus_key(model.corpus, f"music-rules-{model.corpus_sha256[:16]}.json")
        if self.store.exists(key):
            return MusicRules.from_json(self.store.get_bytes(key).decode())
        try:
            corpus = load_corpus(self.store, model.corpus)
        except NotFoundError:
            log.warning("corpus %s of model %s is not in the store: music rules from O'Neill's",
                        model.corpus, model.short_id)  # fmt: skip
            return DEFAULT_RULES
        rules = learn_music_rules(list(abc_notation.split_tunes(corpus.train_text)))
        self.store.put_bytes(key, rules.to_json().encode())
        return rules

    def _build_index(self, corpus: Corpus) -> MelodyIndex:
        """The corpus's melody index, from the store when an earlier process saved it there
        (building it reads every tune: ~40 s for 11,000 tunes on a 2-core machine)."""
        from common.abc.corpus import corpus_key
        from common.quality.similarity import READING, MelodyIndex

        name = f"melody-index-{corpus.record.sha256[:16]}-r{READING}.npz"
        key = corpus_key(corpus.record.name, name)
        if self.store.exists(key):
            return MelodyIndex.from_bytes(self.store.get_bytes(key))
        index = MelodyIndex.from_tunes(abc_notation.split_tunes(corpus.train_text))
        self.store.put_bytes(key, index.to_bytes())
        return index


def artifact_key(batch_id: str, name: str) -> str:
    return f"batches/{batch_id}/{name}"


def tune_key(batch_id: str, tid: str, fmt: str) -> str:
    return artifact_key(batch_id, f"{tid}.{fmt}")


def create_batch(ctx: Context, spec: BatchSpec, *, batch_id: str | None = None) -> BatchRecord:
    """Record a new batch with every tune queued; the model must exist and fit the primers.

    Every parameter is checked before the first record is written (`check_batch_spec`).
    """
    record = resolve_model(ctx.store, spec.model_id)
    check_batch_spec(spec, record.chars)
    batch = BatchRecord(id=batch_id or new_batch_id(), spec=spec)
    tunes = [
        TuneRecord(
            batch_id=batch.id,
            tune_id=tune_id(i),
            index=i,
            primed_by=spec.primed_by[i] if spec.primed_by else None,
        )
        for i in range(spec.count)
    ]
    ctx.records.create_batch(batch, tunes)
    return batch


def cancel_pending(ctx: Context, batch_id: str, indices: range | None = None) -> int:
    """Mark every not-yet-final tune (of `indices`, default all) cancelled; return how many."""
    count = 0
    targets = (
        ctx.records.tunes(batch_id)
        if indices is None
        else [ctx.records.get_tune(batch_id, tune_id(i)) for i in indices]
    )
    for tune in targets:
        if not tune.status.final:
            try:
                ctx.records.update_tune(batch_id, tune.tune_id, TuneStatus.CANCELLED)
            except InvalidTransitionError:  # it became done or failed since it was read
                continue
            count += 1
    return count


def fail_tune(ctx: Context, batch_id: str, tid: str, error: str) -> TuneRecord:
    """Give up on a tune (retries exhausted, dead-lettered): record it failed, keep the reason."""
    tune = ctx.records.get_tune(batch_id, tid)
    if tune.status.final:
        return tune
    return ctx.records.update_tune(batch_id, tid, TuneStatus.FAILED, error=error)


def manifest_key(batch_id: str) -> str:
    return artifact_key(batch_id, "manifest.json")


def cancel_batch(ctx: Context, batch_id: str) -> cancelling.CancelOutcome:
    """Flag the batch cancelled (running chunks see it at their next step) and cancel queued
    tunes. A batch whose every tune is final already is left as it is (`finished`)."""
    batch = ctx.records.get_batch(batch_id)
    counts = ctx.records.counts(batch_id)
    if all(TuneStatus(s).final for s, n in counts.items() if n):
        return cancelling.CancelOutcome(batch_id, 0, finished=True, counts=counts)
    batch.cancelled = True
    ctx.records.save_batch(batch)
    n = cancel_pending(ctx, batch_id)
    counts = ctx.records.counts(batch_id)
    return cancelling.CancelOutcome(batch_id, n, finished=False, counts=counts)


def retry_failed(ctx: Context, batch_id: str) -> dict[str, list[str]]:
    """Put failed tunes back: those with an ABC file to rendering, the rest to generation.

    Returns ``{"render": [...tune ids], "generate": [...chunk numbers as str]}`` so the caller
    enqueues exactly that work. The batch's manifest is withdrawn until they are final again.
    """
    batch = ctx.records.get_batch(batch_id)
    render_ids: list[str] = []
    chunks: set[int] = set()
    for tune in ctx.records.tunes(batch_id):
        if tune.status != TuneStatus.FAILED:
            continue
        if ctx.store.exists(tune_key(batch_id, tune.tune_id, "abc")):
            fresh = tune.model_copy(update={"status": TuneStatus.GENERATED, "error": None})
            render_ids.append(tune.tune_id)
        else:
            fresh = tune.model_copy(update={"status": TuneStatus.QUEUED, "error": None})
            chunks.add(tune.index // batch.spec.chunk_size)
        ctx.records.reset_tune(fresh, was=TuneStatus.FAILED)
    if render_ids or chunks:
        batch.finished_at = None
        batch.manifest_key = None
        ctx.records.save_batch(batch)
        ctx.store.delete(manifest_key(batch_id))
    return {"render": render_ids, "generate": [str(c) for c in sorted(chunks)]}
