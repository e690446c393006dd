"""Every user-facing parameter of training and generation, each defined once.

A training hyperparameter is a field of `Recipe`: presets (`common.presets`) are recipes
with a name, a model record keeps the recipe it was trained with, and a training spec overrides
the fields of `RecipeOverrides`. A sampling option is a field of `SamplingOptions`: the sampler's
`SamplingParams`, batch specs and schedules all carry it. What is done with each sampled tune
(the gate it must pass, the files it is rendered into) is `TuneOptions`, which batch specs and
schedules share with one default each. Precision values, output formats, the audio levels and
the ``train_on`` choices are enums or validated tuples here, which the CLI turns into its option
choices.
Adding a parameter is one field here (plus its CLI option); a test checks that the overridable
recipe fields and the overrides stay the same set.

This module imports neither TensorFlow nor any other part of tunebatch but `common.errors` and
the formats table (`common.formats`, a leaf module), so the producer and the schemas can
use it freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.errors import InvalidInputError
from common.formats import DEFAULT_FORMATS as DEFAULT_FORMATS
from common.formats import FORMATS as FORMATS
from common.formats import Formats as Formats

# --- precision ------------------------------------------------------------------------------


class Precision(StrEnum):
    """The number format a user asks for, for training and for sampling.

    ``auto`` is resolved per machine where the work runs (`common.lstm.precision`).
    """

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    MIXED_FLOAT16 = "mixed_float16"


#: A precision the sampler runs in: `Precision` resolved on the machine that samples.
SamplerPrecision = Literal["float32", "bfloat16", "mixed_float16"]
#: A Keras dtype policy a model trains with: `Precision` resolved on the machine that trains.
#: The variables stay float32, the layers compute in 16 bits.
TrainingPolicy = Literal["float32", "mixed_bfloat16", "mixed_float16"]
#: What a recipe's precision can say: a request, or the policy a model record was trained with
#: (so that retraining like a model passes its policy on).
TrainPrecision = Precision | TrainingPolicy


# --- output formats -------------------------------------------------------------------------

# The formats are a table of their own (`common.formats`: names, sources, tools, content
# types); the names and the validated `Formats` type of a spec are re-exported here, at the top,
# with the other parameters.


# --- audio level ----------------------------------------------------------------------------


class AudioLevel(StrEnum):
    """How a batch's audio is made: channels, sample rate and encoder quality, by name.

    A tune is one melody line on one instrument, so stereo carries the same signal twice (the
    synth only adds its reverb's width) and most of its sound sits below 10 kHz. ``standard`` is
    mono at 24 kHz; ``hifi`` is what every batch got before levels existed (stereo 44.1 kHz,
    oggenc's default quality) and is the baseline of bench/render.py; ``preview`` is for
    listening through a batch quickly and cheaply. Measured in docs/rendering.md#audio-levels.
    """

    PREVIEW = "preview"
    STANDARD = "standard"
    HIFI = "hifi"


@dataclass(frozen=True)
class AudioProfile:
    """What an `AudioLevel` means to the render stages (`common.render.stages`)."""

    channels: Literal[1, 2]
    sample_rate: int
    #: oggenc ``-q`` (-1..10; 3 is oggenc's own default).
    ogg_quality: int


AUDIO_PROFILES: dict[AudioLevel, AudioProfile] = {
    # Mono 16 kHz: sound up to 8 kHz, the fundamentals and first harmonics of every tune note.
    AudioLevel.PREVIEW: AudioProfile(channels=1, sample_rate=16_000, ogg_quality=0),
    # Mono 24 kHz: sound up to 12 kHz, where a fiddle's or a flute's tone has all but faded.
    AudioLevel.STANDARD: AudioProfile(channels=1, sample_rate=24_000, ogg_quality=3),
    # Stereo 44.1 kHz, oggenc's default quality: the renders before levels existed.
    AudioLevel.HIFI: AudioProfile(channels=2, sample_rate=44_100, ogg_quality=3),
}
#: What a batch's audio is when nobody says otherwise.
DEFAULT_AUDIO = AudioLevel.STANDARD


# --- the sound ------------------------------------------------------------------------------


class Instrument(StrEnum):
    """What the tunes are heard on: a General MIDI program that abc2midi writes into the MIDI
    (``%%MIDI program``), so every synthesiser plays the same sound."""

    PIANO = "piano"
    FIDDLE = "fiddle"
    FLUTE = "flute"
    WHISTLE = "whistle"
    ACCORDION = "accordion"


#: General MIDI program numbers (0-based, as abc2midi's ``%%MIDI program`` takes them).
GM_PROGRAM: dict[Instrument, int] = {
    Instrument.PIANO: 0,  # Acoustic Grand Piano: abc2midi's default
    Instrument.FIDDLE: 40,  # Violin
    Instrument.FLUTE: 73,  # Flute
    Instrument.WHISTLE: 78,  # Whistle
    Instrument.ACCORDION: 21,  # Accordion
}
DEFAULT_INSTRUMENT = Instrument.PIANO
InstrumentField = Annotated[
    Instrument,
    Field(description="The instrument the audio plays on (a General MIDI program)."),
]


# --- training recipe ------------------------------------------------------------------------


class TrainOn(StrEnum):
    """What one training sequence is.

    ``windows``: windows of ``seq_len`` chars cut from the corpus text, each from a zero state
    (or, with ``stateful``, text streams with the state carried across windows and tunes);
    ``tunes``: whole tunes from ``X:`` to their blank line, each from a zero state, batched by
    length with the padding masked: the model learns over the whole form of a tune, as the
    sampler runs it; ``streams``: whole tunes laid end to end in ``batch_size`` parallel streams,
    each tune starting at a window boundary, the state carried from window to window within a
    tune and zeroed at each tune start (truncated back-propagation through time, windows of
    ``seq_len``): the same whole-tune context with the fixed shapes windows train fast with.
    """

    WINDOWS = "windows"
    TUNES = "tunes"
    STREAMS = "streams"


Epochs = Annotated[int, Field(ge=1, le=1000)]
WindowStep = Annotated[int, Field(ge=1, description="Chars between the starts of two windows.")]
BatchSize = Annotated[int, Field(ge=1, description="Sequences per optimizer step.")]
LearningRate = Annotated[float, Field(gt=0, le=1, description="Adam learning rate.")]
WindowFraction = Annotated[
    float, Field(gt=0, le=1, description="Share of the windows each epoch trains on.")
]
Stateful = Annotated[
    bool, Field(description="Carry LSTM state across consecutive windows (TBPTT).")
]
TrainOnField = Annotated[TrainOn, Field(description="Train on windows or whole tunes.")]
TransposeCopies = Annotated[
    int,
    Field(
        ge=0,
        le=6,
        description="Copies of each training tune in other keys (key augmentation, "
        "common.lstm.augment); 0: none.",
    ),
]
PrecisionField = Annotated[
    TrainPrecision,
    Field(
        description="Training precision; auto = per hardware, resolved by the worker that "
        "trains (common.lstm.precision.training_policy)."
    ),
]


class Recipe(BaseModel):
    """The architecture and training recipe of a model: what a preset names, a spec overrides
    and a model record keeps."""

    model_config = ConfigDict(extra="forbid")

    embedding_dim: int = Field(ge=1)
    units: int = Field(ge=1)
    seq_len: int = Field(ge=1, description="Window length in chars.")
    window_step: WindowStep
    batch_size: BatchSize
    epochs: Epochs
    learning_rate: LearningRate
    stateful: Stateful = False
    precision: PrecisionField = "float32"
    #: Share of the windows one epoch trains on, a fresh random subset each epoch: with windows
    #: every 10 chars and 0.1, each char is seen about once an epoch, in every alignment.
    window_fraction: WindowFraction = 1.0
    #: Windows of `seq_len` chars, or whole tunes (`batch_size` tunes of similar length a step).
    train_on: TrainOnField = TrainOn.WINDOWS
    #: Each training tune also in this many other keys of the corpus's own (common.lstm.augment;
    #: measured in docs/training.md#key-transposition).
    transpose_copies: TransposeCopies = 0

    @property
    def dtype_policy(self) -> str | None:
        """The Keras dtype policy to train with (None = the float32 default)."""
        return None if self.precision == "float32" else str(self.precision)


#: The fields that make the network's shape: a preset's, never overridden by a spec.
ARCHITECTURE_FIELDS = frozenset({"embedding_dim", "units", "seq_len"})


class RecipeOverrides(BaseModel):
    """The recipe fields a training spec may override; None keeps the preset's."""

    model_config = ConfigDict(extra="forbid")

    epochs: Epochs | None = None
    window_step: WindowStep | None = None
    batch_size: BatchSize | None = None
    learning_rate: LearningRate | None = None
    window_fraction: WindowFraction | None = None
    stateful: Stateful | None = None
    train_on: TrainOnField | None = None
    precision: PrecisionField | None = None
    transpose_copies: TransposeCopies | None = None

    def overrides(self) -> dict[str, Any]:
        """The fields this spec sets, for `Recipe.model_copy(update=...)`."""
        return {
            name: value
            for name in RecipeOverrides.model_fields
            if (value := getattr(self, name)) is not None
        }


def recipe_overrides(recipe: Recipe) -> dict[str, Any]:
    """Every overridable field of `recipe`: a spec that trains exactly like it."""
    return {name: getattr(recipe, name) for name in RecipeOverrides.model_fields}


# --- sampling -------------------------------------------------------------------------------

DEFAULT_TEMPERATURE = 1.0
TEMPERATURE_MAX = 10.0
MAX_CHARS_MIN = 16
MAX_CHARS_MAX = 100_000
SEED_MAX = 2**63 - 1
DEFAULT_MAX_CHARS = 1500
#: Two-part form by construction (`common.lstm.bar_form`), on where the bar tracker is: on 200
#: raw tunes of the demo model it raises two-part form from 0-0.5 % to 99.5-100 % and abc2midi
#: validity too (docs: bench/tune_validity.py --form both).
DEFAULT_FORM = True
#: Samples per tune the gate may take before the tune fails (``--valid-only``).
DEFAULT_MAX_TRIES = 5
MAX_TRIES_MAX = 100

_N = TypeVar("_N", int, float)


def _between(what: str, low: _N, high: _N, hint: str = "") -> Callable[[_N], _N]:
    """A field check that raises `InvalidInputError`, as every check of our own input does."""

    def check(value: _N) -> _N:
        if not low <= value <= high:  # NaN fails too
            raise InvalidInputError(f"{what} must be between {low} and {high}, got {value}{hint}")
        return value

    return check


Temperature = Annotated[float, AfterValidator(_between("temperature", 0.0, TEMPERATURE_MAX))]
TopK = Annotated[int, AfterValidator(_between("top-k", 0, 1_000_000, " (0 = off)"))]
MaxChars = Annotated[int, AfterValidator(_between("max-chars", MAX_CHARS_MIN, MAX_CHARS_MAX))]
Seed = Annotated[int, AfterValidator(_between("seed", 0, SEED_MAX))]


class SamplingOptions(BaseModel):
    """What shapes a tune besides the model, the primer and the seed: recorded with every batch
    and every schedule."""

    model_config = ConfigDict(extra="forbid")

    temperature: Temperature = Field(
        default=DEFAULT_TEMPERATURE,
        description="Sampling temperature: 0 = always the likeliest char, 1 = the model's own "
        "odds, higher = more surprising.",
    )
    top_k: TopK = Field(default=0, description="Sample among the k likeliest chars (0 = all).")
    max_chars: MaxChars = DEFAULT_MAX_CHARS
    #: Mask every step with the per-slot bar tracker (`common.lstm.bar_tracker`): bars never
    #: overflow and end only when full (or as a pickup).
    bar_tracker: bool = Field(
        default=True, description="Mask sampling so every bar lasts the meter (see bar_tracker)."
    )
    #: With the bar tracker, also write two 8-bar parts and end (`common.lstm.bar_form`).
    form: bool = Field(
        default=DEFAULT_FORM,
        description="With the bar tracker: two 8-bar parts (AABB), then the end.",
    )
    #: The sampler is built in this precision (a worker keeps one sampler per model and
    #: precision); a run of an existing sampler does not change it.
    precision: Precision = Field(
        default=Precision.AUTO, description="Matmul precision of the sampler; auto = per hardware."
    )


class SamplingParams(SamplingOptions):
    """The sampling options with the seed a run's random streams come from."""

    seed: Seed = 0


# --- what is done with each tune: the gate and the files --------------------------------------

#: Melody similarity (common.quality.similarity) from which a tune is a near-copy of a training
#: tune.
#: Measured on O'Neill's (`bench/quality.py --calibrate`): the 171 tunes music21 holds in two
#: transcriptions score a median 1.0 and 98 % score >= 0.5; a tune and its nearest tune of another
#: number score a median 0.18 (90th percentile 0.28), and the 2.9 % at >= 0.5 are mostly one tune
#: printed under two numbers, or a close variant.
NEAR_COPY_THRESHOLD = 0.5
#: The gate is on unless asked off: ``submit-batch`` and schedules both default to it, and a
#: spec built in code gets what a command line gets.
DEFAULT_VALID_ONLY = True


class TuneOptions(BaseModel):
    """What a batch does with each tune it samples: the gate the tune must pass and the files
    it is rendered into. Batch specs and schedules both are these, so each field has one
    default and one description."""

    model_config = ConfigDict(extra="forbid")

    valid_only: bool = Field(
        default=DEFAULT_VALID_ONLY,
        description="The gate: resample until abc2midi accepts a tune, its bars fit the meter "
        "and it is no near-copy of a training tune (up to max_tries).",
    )
    max_tries: int = Field(
        default=DEFAULT_MAX_TRIES,
        ge=1,
        le=MAX_TRIES_MAX,
        description="Samples per tune the gate may take before the tune fails.",
    )
    near_copy_threshold: float = Field(
        default=NEAR_COPY_THRESHOLD,
        ge=0.0,
        description="Melody similarity to a training tune from which a tune is a near-copy "
        "(common.quality.similarity); above 1 turns the copy check's resampling off.",
    )
    formats: Formats = Field(
        default=DEFAULT_FORMATS,
        description="Output formats (common.formats), abc always included.",
    )
    audio: AudioLevel = Field(
        default=DEFAULT_AUDIO,
        description="Audio level (common.params.AudioLevel): channels, sample rate and encoder "
        "quality of every audio format.",
    )
    instrument: InstrumentField = DEFAULT_INSTRUMENT
