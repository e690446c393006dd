"""Scheduled dataset-wide generation, the pure part: what a schedule asks for and what it plans.

A schedule (``producer schedule add``) names a corpus and a number of tunes per dataset tune.
When it fires, every tune of the corpus (train and validation text) primes `per_tune` new tunes
with its own header — rhythm, meter, unit length and key (`abc_notation.Header.primer`) — and
every new tune records the dataset tune that primed it (``primed_by``, e.g.
``oneills:X:123 The Kesh``), which the batch's manifest carries per tune.

Where schedules are stored (Redis, celery-redbeat) is `common.dispatch.schedule_store`, and what
a firing does (Celery tasks) is `worker.schedules`; this module has no Celery in it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import Field

from common.abc import notation as abc_notation
from common.abc.corpus import Corpus
from common.errors import InvalidInputError
from common.lstm.registry import LATEST
from common.params import SamplingOptions, Seed, TuneOptions, recipe_overrides
from common.schemas import BatchSpec, ModelRecord, Name, Record, TrainSpec

log = logging.getLogger(__name__)


class ScheduleSpec(Record, SamplingOptions, TuneOptions):
    """One schedule as stored (the argument of every firing): what a batch of it samples and
    does with each tune (`TuneOptions`, as a batch spec has them), and when and from what."""

    name: Name
    cron: str = Field(description="Five cron fields: minute hour day-of-month month day-of-week.")
    corpus: Name
    per_tune: int = Field(default=1, ge=1, le=1000, description="New tunes per dataset tune.")
    model: str = Field(default=LATEST, description="Model id, unique prefix or 'latest'.")
    retrain_if_changed: bool = Field(
        default=False,
        description="Train a new model first (same preset) when the corpus changed since the "
        "model was trained.",
    )
    seed: Seed | None = Field(default=None, description="Fixed seed; None = a new seed per firing.")


#: What a firing's batch takes from its schedule as it is.
_SHARED = set(SamplingOptions.model_fields) | set(TuneOptions.model_fields)


@dataclass(frozen=True)
class DatasetTune:
    """A tune of the dataset as a schedule uses it: who it is and the primer it gives."""

    ref: str
    primer: str


def tune_ref(corpus: str, tune: str) -> str:
    """``<corpus>:X:<number> <title>``: how a new tune names the dataset tune that primed it."""
    header = abc_notation.parse_header(tune)
    return f"{corpus}:X:{header.number} {header.title}".rstrip()


def dataset_tunes(corpus: Corpus) -> list[DatasetTune]:
    """Every tune of the corpus (train, then validation) with its header primer."""
    name = corpus.record.name
    return [
        DatasetTune(tune_ref(name, tune), abc_notation.parse_header(tune).primer())
        for text in (corpus.train_text, corpus.valid_text)
        for tune in abc_notation.split_tunes(text)
    ]


def needs_retrain(corpus: Corpus, model: ModelRecord) -> bool:
    """The corpus changed since `model` was trained on it (or the model is from another one)."""
    return model.corpus != corpus.record.name or model.corpus_sha256 != corpus.record.sha256


def retrain_spec(corpus: str, model: ModelRecord) -> TrainSpec:
    """Train like `model` was trained (same preset and recipe, precision included) on the
    current `corpus`."""
    return TrainSpec(corpus=corpus, preset=model.preset, **recipe_overrides(model))


def dataset_batch_spec(
    spec: ScheduleSpec, corpus: Corpus, model: ModelRecord, *, chunk_size: int, seed: int
) -> BatchSpec:
    """The one batch a firing submits: `per_tune` tunes for each dataset tune, in corpus order.

    A dataset tune whose header uses characters the model never saw (the corpus changed and the
    model was not retrained) cannot prime it: it is left out, with a warning.
    """
    known = set(model.chars)
    primers: list[str] = []
    primed_by: list[str] = []
    skipped: list[str] = []
    for tune in dataset_tunes(corpus):
        if not set(tune.primer) <= known:
            skipped.append(tune.ref)
            continue
        primers += [tune.primer] * spec.per_tune
        primed_by += [tune.ref] * spec.per_tune
    if skipped:
        log.warning(
            "schedule %s: %d tunes of %s have header characters model %s does not know; "
            "left out (retrain with --retrain-if-changed): %s",
            spec.name, len(skipped), corpus.record.name, model.short_id, ", ".join(skipped[:5]),
        )  # fmt: skip
    if not primers:
        raise InvalidInputError(
            f"schedule {spec.name}: corpus {corpus.record.name!r} has no tune model "
            f"{model.short_id} can be primed with"
        )
    return BatchSpec(
        **spec.model_dump(include=_SHARED),
        count=len(primers),
        model_id=model.id,
        seed=seed,
        primer=primers[0],
        primers=primers,
        primed_by=primed_by,
        chunk_size=chunk_size,
    )
