"""Pydantic models of everything that is stored or sent: corpora, models, batches, tunes, manifests.

Records are JSON documents (no pickle anywhere) and carry their own provenance, so a file fetched
from a bucket years later still says which model, corpus, parameters and tool versions made it.
Ids are generated here and validated on the way in, because storage keys are built from ids only.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from common.errors import InvalidInputError, InvalidTransitionError
from common.params import (
    Recipe,
    RecipeOverrides,
    SamplerPrecision,
    SamplingParams,
    TrainOn,
    TuneOptions,
)
from common.presets import DEFAULT_PRESET, PRESETS

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_BATCH_ID = re.compile(r"^b[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_RUN_ID = re.compile(r"^r[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def now() -> datetime:
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    return f"{prefix}{now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def new_batch_id() -> str:
    """Sortable by creation time, unguessable enough to not collide between producers."""
    return _new_id("b")


def new_run_id() -> str:
    return _new_id("r")


def _checker(pattern: re.Pattern[str], what: str, hint: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise InvalidInputError(f"{value!r} is not a valid {what}; {hint}")
        return value

    return check


check_name = _checker(
    _NAME, "name", "use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
)
check_batch_id = _checker(_BATCH_ID, "batch id", "batch ids look like b20261125-093000-1a2b3c")
check_run_id = _checker(_RUN_ID, "training run id", "run ids look like r20261125-093000-1a2b3c")
check_sha256 = _checker(_SHA256, "model id", "model ids are 64 hex characters (SHA-256)")

Name = Annotated[str, AfterValidator(check_name)]
BatchId = Annotated[str, AfterValidator(check_batch_id)]
ModelId = Annotated[str, AfterValidator(check_sha256)]


def tune_id(index: int) -> str:
    """Tune ids are positions in the batch: re-running a job rewrites the same keys."""
    return f"t{index:06d}"


def tune_index(tid: str) -> int:
    if not re.fullmatch(r"t[0-9]{6}", tid):
        raise InvalidInputError(f"{tid!r} is not a tune id (they look like t000042)")
    return int(tid[1:])


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --- corpora --------------------------------------------------------------------------------
class CorpusRecord(Record):
    name: Name
    source: str
    created_at: datetime = Field(default_factory=now)
    files: int
    tunes_found: int
    dropped_unsafe: int
    dropped_duplicates: int
    dropped_missing_headers: int
    dropped_invalid: int
    stripped_directives: dict[str, int] = Field(
        default_factory=dict,
        description="Directive lines removed by the allow-list (common.abc.directives), by name.",
    )
    valid_only: bool
    rhythm_only: bool = Field(default=False, description="Kept only tunes in rhythm.")
    dropped_rhythm: int = 0
    source_header: bool = Field(
        default=False, description="Each tune says its collection in an S: line after X:."
    )
    collections: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Per collection of a combined corpus: found, kept, and dropped per reason.",
    )
    train_tunes: int
    valid_tunes: int
    train_chars: int
    valid_chars: int
    vocab_size: int
    sha256: str = Field(
        description="SHA-256 of train text + valid text: changes when the data does."
    )


# --- models ---------------------------------------------------------------------------------
class ModelRecord(Record, Recipe):
    """A registered model: the recipe it was trained with, what it was trained on, its scores."""

    id: ModelId
    preset: str
    vocab_size: int
    chars: list[str]
    corpus: str
    corpus_sha256: str
    train_loss: float | None = None
    valid_loss: float | None = None
    valid_bits_per_char: float | None = None
    #: What `valid_loss` / `valid_bits_per_char` score: whole validation tunes from a zero state
    #: (as the sampler runs), or zero-state windows of `seq_len` chars.
    valid_scored_on: TrainOn = TrainOn.WINDOWS
    valid_window_bits_per_char: float | None = None
    history: list[dict[str, float]] = Field(default_factory=list)
    train_seconds: float = 0.0
    chars_processed: int = 0
    run_id: str | None = None
    created_at: datetime = Field(default_factory=now)
    versions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _ignore_unmeasured(cls, data: Any) -> Any:
        """A stored record may carry ``sample_validity``, a figure never measured (always
        null): it is dropped on read. Sample validity is measured per batch (the manifest's
        quality report), at the temperature the tunes were sampled with."""
        if isinstance(data, dict) and data.get("sample_validity", 0) is None:
            data = {k: v for k, v in data.items() if k != "sample_validity"}
        return data

    @property
    def short_id(self) -> str:
        return self.id[:12]


# --- training runs --------------------------------------------------------------------------
def _known_preset(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return name


class TrainSpec(Record, RecipeOverrides):
    """A training request: a preset, the recipe fields it overrides, the data and the seed."""

    corpus: Name
    preset: Annotated[str, AfterValidator(_known_preset)] = DEFAULT_PRESET
    seed: int = 0
    max_train_chars: int | None = Field(default=None, ge=1000)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunState(Record):
    """What every view of a training run says: which run, its recipe, how far, how it ended."""

    id: str
    spec: TrainSpec
    status: RunStatus = RunStatus.QUEUED
    epochs_done: int = 0
    model_id: str | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)


class RunRecord(RunState):
    """The durable record of a run, in the artifact store beside its checkpoint: what a resumed
    run restarts from (`common.lstm.training`)."""

    checkpoint_sha256: str | None = None
    history: list[dict[str, float]] = Field(default_factory=list)


class RunProgress(RunState):
    """The live view of a run in Redis, updated every few steps: what `producer train --wait`
    and `producer runs` show."""

    epochs: int | None = None
    step: int = 0
    steps: int | None = None
    loss: float | None = None
    val_bits_per_char: float | None = None


# --- batches and tunes ----------------------------------------------------------------------
class TuneStatus(StrEnum):
    QUEUED = "queued"
    GENERATING = "generating"
    GENERATED = "generated"
    RENDERING = "rendering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TuneStatus.DONE, TuneStatus.FAILED, TuneStatus.CANCELLED})

#: A tune only moves forward; a retry (``producer retry --failed``) is the one way back, and it
#: goes through `retry_status`. Re-entering the same status is allowed: jobs are idempotent.
ALLOWED_TRANSITIONS: dict[TuneStatus, frozenset[TuneStatus]] = {
    TuneStatus.QUEUED: frozenset({TuneStatus.GENERATING, TuneStatus.FAILED, TuneStatus.CANCELLED}),
    TuneStatus.GENERATING: frozenset(
        {TuneStatus.GENERATED, TuneStatus.FAILED, TuneStatus.CANCELLED}
    ),
    TuneStatus.GENERATED: frozenset(
        {TuneStatus.RENDERING, TuneStatus.FAILED, TuneStatus.CANCELLED}
    ),
    TuneStatus.RENDERING: frozenset({TuneStatus.DONE, TuneStatus.FAILED, TuneStatus.CANCELLED}),
    TuneStatus.DONE: frozenset(),
    TuneStatus.FAILED: frozenset(),
    TuneStatus.CANCELLED: frozenset(),
}


def check_transition(current: TuneStatus, new: TuneStatus) -> None:
    if new != current and new not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransitionError(f"a tune cannot go from {current} to {new}")


class BatchSpec(Record, SamplingParams, TuneOptions):
    """What the user asked for; everything needed to reproduce the batch.

    The gate's and the output's fields are `TuneOptions`, shared with schedules."""

    count: int = Field(ge=1, le=1_000_000)
    model_id: ModelId
    primer: str = "X:"
    primers: list[str] | None = Field(
        default=None, description="One primer per tune (dataset-wide batches); overrides primer."
    )
    primed_by: list[str] | None = Field(
        default=None, description="Per tune: the dataset tune whose header primed it."
    )
    chunk_size: int = Field(default=256, ge=1)

    def primer_for(self, index: int) -> str:
        return self.primers[index] if self.primers else self.primer

    @property
    def chunks(self) -> int:
        return -(-self.count // self.chunk_size)

    def chunk_indices(self, chunk_no: int) -> range:
        if not 0 <= chunk_no < self.chunks:
            raise InvalidInputError(f"chunk {chunk_no} is outside 0..{self.chunks - 1}")
        start = chunk_no * self.chunk_size
        return range(start, min(self.count, start + self.chunk_size))


class BatchRecord(Record):
    id: BatchId
    spec: BatchSpec
    created_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None
    cancelled: bool = False
    manifest_key: str | None = None


class ArtifactFile(BaseModel):
    format: str
    key: str
    size: int
    sha256: str


class RenderInfo(BaseModel):
    """How one tune's files were made, beyond the batch-wide tool versions of the manifest.

    Optional everywhere: a record may lack it, and renders without audio have no audio figures.
    """

    synth: str | None = Field(default=None, description="timidity or fluidsynth")
    midi_seconds: float | None = Field(default=None, description="Playing time of the MIDI.")
    loudness_lufs: float | None = Field(
        default=None, description="Integrated loudness as synthesised (BS.1770-4), before gain."
    )
    gain_db: float | None = Field(default=None, description="Gain applied to reach the target.")
    seconds: dict[str, float] = Field(
        default_factory=dict, description="Wall seconds per stage (abc2midi, timidity, ...)."
    )


class TuneRecord(Record):
    batch_id: BatchId
    tune_id: str
    index: int
    status: TuneStatus = TuneStatus.QUEUED
    title: str | None = None
    valid: bool | None = Field(default=None, description="Raw validity of the accepted sample.")
    rhythm_ok: bool | None = Field(
        default=None, description="Every bar fits the meter (common.abc.rhythm); None: not checked."
    )
    tries: int = 0
    tries_valid: int = Field(default=0, description="Tries abc2midi accepted (before the gate).")
    tries_rhythm_ok: int = Field(default=0, description="Tries whose bars all fit the meter.")
    tries_near_copy: int = Field(default=0, description="Tries that were near-copies.")
    bars: int | None = None
    wrong_bars: int | None = None
    chars: int | None = Field(default=None, description="Length of the stored ABC text.")
    rhythm_checked: bool | None = Field(
        default=None, description="The meter was known, so the bars were checked."
    )
    two_part: bool | None = Field(default=None, description="Two repeated parts (AABB form).")
    melody_grams: int | None = Field(
        default=None,
        description="Distinct melody n-grams (common.quality.similarity); 0: too short to compare.",
    )
    nearest_tune: str | None = Field(
        default=None, description="The most similar tune of the model's training corpus."
    )
    similarity: float | None = Field(
        default=None, description="Melody similarity to nearest_tune (common.quality.similarity)."
    )
    key: str | None = Field(
        default=None, description="The tune's key as musicians name it (G, Em, Ador), from K:."
    )
    truncated: bool = False
    check_errors: list[str] = Field(default_factory=list)
    files: list[ArtifactFile] = Field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    primed_by: str | None = None
    render: RenderInfo | None = Field(
        default=None, description="Synth, loudness and stage times of the last render."
    )
    precision: SamplerPrecision | None = Field(
        default=None, description="Precision the sampler ran in."
    )
    updated_at: datetime = Field(default_factory=now)

    def move_to(self, status: TuneStatus) -> None:
        check_transition(self.status, status)
        self.status = status
        self.updated_at = now()


class MusicalityReport(BaseModel):
    """How like human tunes a set is (common.quality.musicality, .overlap, .reference): per
    feature the overlap (0..1, 1 = like the reference) of the set's distances to the reference
    tunes with the reference's own, per family and overall; the set's plain figures; and the
    same figures of held-out human tunes and of the whole corpus to read them against."""

    reference: str | None = Field(description="Corpus whose held-out tunes are the reference.")
    unavailable: str | None = Field(
        default=None, description="Why there is no score (no reference corpus imported, ...)."
    )
    reference_tunes: int | None = None
    tunes: int | None = Field(default=None, description="Tunes scored.")
    overall: float | None = Field(default=None, description="Mean overlap over all features.")
    families: dict[str, float | None] = Field(
        default_factory=dict, description="Mean overlap per family: pitch, rhythm, structure."
    )
    overlap: dict[str, float | None] = Field(default_factory=dict, description="Per feature.")
    kl: dict[str, float | None] = Field(
        default_factory=dict, description="KL(reference's distances || the set's), per feature."
    )
    figures: dict[str, float | None] = Field(
        default_factory=dict,
        description="Plain figures: last note on the tonic, repeated bars, motif reuse, ...",
    )
    baselines: dict[str, dict[str, float | None]] = Field(
        default_factory=dict,
        description="The same figures of 'human' (held-out tunes, scored) and 'corpus' (all).",
    )


class QualityReport(BaseModel):
    """Figures of a set of tunes (common.quality.figures); shares are 0..1, None when not
    measured."""

    tunes: int
    valid: float | None = Field(default=None, description="Share abc2midi accepts.")
    rhythm_ok: float = Field(description="Share whose every bar fits the meter.")
    bar_regularity: float | None = Field(
        default=None,
        description="Share of bars of the meter's length (pickups completed by a closing bar "
        "count as such); None when no tune has a meter.",
    )
    two_part: float = Field(description="Share in two-part form (two 8-bar or 16-bar parts).")
    mean_bars: float
    mean_chars: float
    near_copy: float | None = Field(default=None, description="Share of near-copies.")
    near_copy_threshold: float | None = None
    mean_similarity: float | None = None
    diversity: float = Field(
        description="Mean over pairs of tunes of the share of interval n-grams they do not share."
    )
    keys: dict[str, float] | None = Field(
        default=None,
        description="Share of the tunes with a readable key in each key, most common first.",
    )
    tries: int | None = Field(default=None, description="Samples drawn, gate included.")
    raw_valid: float | None = Field(default=None, description="Share of tries abc2midi accepts.")
    raw_rhythm_ok: float | None = Field(default=None, description="Share of tries in rhythm.")
    musicality: MusicalityReport | None = Field(
        default=None, description="Likeness to held-out human tunes (None: not measured)."
    )


class Manifest(BaseModel):
    """Written once, when every tune of the batch is in a final state."""

    batch_id: str
    created_at: datetime
    finished_at: datetime
    spec: BatchSpec
    model: dict[str, Any]
    tool_versions: dict[str, str]
    software: dict[str, str]
    counts: dict[str, int]
    quality: QualityReport | None = Field(
        default=None, description="Quality figures of the delivered tunes and the raw tries."
    )
    tunes: list[TuneRecord]
