"""The job context: what every job needs, built once per process, and what it keeps.

A worker process runs thousands of jobs; loading a model (hash check, Keras build), learning a
corpus's music rules or indexing its melodies for the copy check costs seconds to a minute each,
so the context keeps them between jobs:

- one sampler: the last model and precision asked for (a seed model is 100+ MB, so only one);
- one melody index: that of the last model's corpus (also saved in the store beside the corpus,
  so the next process reads it instead of building it);
- the corpus's music rules are not kept here but in the store (`music-rules-<sha>.json`), read
  when a sampler is built.

Everything else (settings, store, records) is passed in; `on_sampled` lets a worker feed its
metrics without the jobs knowing about Prometheus.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common.abc import notation as abc_notation
from common.errors import NotFoundError
from common.schemas import ModelRecord
from common.settings import Settings
from common.state.base import JobRecords
from common.store.base import ArtifactStore

if TYPE_CHECKING:
    from common.abc.corpus import Corpus
    from common.lstm.music_rules import MusicRules
    from common.lstm.sampler import Sampler
    from common.quality.similarity import MelodyIndex

__all__ = ["Context"]

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
