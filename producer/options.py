"""What every command module shares: the settings, the backend, error handling and the options
that several commands declare alike (spaCy's ``cli/_util.py`` pattern).

Each command module (`producer.corpus_cli`, `model_cli`, `batch_cli`, `schedule_cli`,
`gallery_cli`, `report`) declares its options and calls plain functions; `producer.cli` puts
them on the Typer app.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from common.errors import TunebatchError
from common.formats import made_from
from common.params import (
    DEFAULT_FORMATS,
    DEFAULT_INSTRUMENT,
    FORMATS,
    GM_PROGRAM,
    MAX_CHARS_MAX,
    MAX_CHARS_MIN,
    MAX_TRIES_MAX,
    TEMPERATURE_MAX,
    AudioLevel,
    Instrument,
    SamplingOptions,
)
from common.settings import Settings
from pydantic import BaseModel, ValidationError

from producer import views

if TYPE_CHECKING:
    from common.jobs.context import Context
    from common.store.base import ArtifactStore

    from producer.backend import Backend

P = ParamSpec("P")
R = TypeVar("R")


def _help(model: type[BaseModel], name: str) -> str:
    """An option's help text: the description of the params field it sets, so the CLI and the
    record say the same thing."""
    return model.model_fields[name].description or ""


# Options that submit-batch, schedule add and train share: declared once, one help text each.
TemperatureOpt = Annotated[
    float, typer.Option(min=0.0, max=TEMPERATURE_MAX, help=_help(SamplingOptions, "temperature"))
]
TopKOpt = Annotated[int, typer.Option(min=0, help=_help(SamplingOptions, "top_k"))]
_SEED_HELP = (
    "Same seed + model + params = same tunes; a schedule without one draws a new seed each firing."
)
SeedOpt = Annotated[int, typer.Option(min=0, help=_SEED_HELP)]
#: A schedule's seed: None draws a new one each firing.
OptionalSeedOpt = Annotated[int | None, typer.Option(min=0, help=_SEED_HELP)]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Distributed mode: follow the batch or training run to its end (embedded mode "
        "always does).",
    ),
]
MaxCharsOpt = Annotated[
    int, typer.Option(min=MAX_CHARS_MIN, max=MAX_CHARS_MAX, help="Longest tune in chars.")
]
ValidOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--valid-only/--any",
        help="The gate: resample until abc2midi accepts each tune, its bars fit the meter and "
        "it is no near-copy of a training tune; --any keeps the first try.",
    ),
]
MaxTriesOpt = Annotated[
    int, typer.Option(min=1, max=MAX_TRIES_MAX, help="Samples per tune with --valid-only.")
]
FormOpt = Annotated[bool, typer.Option("--form/--no-form", help=_help(SamplingOptions, "form"))]
#: --formats' default, as the option text.
DEFAULT_FORMATS_OPT = ",".join(DEFAULT_FORMATS)


def _formats_given(text: str) -> str:
    """--formats names at least one format: an empty one is a mistake, not "abc only"."""
    if not [part for part in text.split(",") if part.strip()]:
        raise typer.BadParameter(
            f"no format given; name at least one of {','.join(FORMATS)} "
            "(abc is always included: --formats abc gives the tune text only)"
        )
    return text


#: The formats as typed; a command turns them into the spec's validated `Formats` with
#: `common.formats.parse_formats`, which names the known formats when one is not.
FormatsOpt = Annotated[
    str,
    typer.Option(help=f"Comma list of {','.join(FORMATS)}.", callback=_formats_given),
]

AudioOpt = Annotated[
    AudioLevel,
    typer.Option(
        help=f"Audio of {'/'.join(f for f in FORMATS if f in made_from('wav'))}: standard = mono "
        "24 kHz, preview = mono 16 kHz (smaller, quicker), hifi = stereo 44.1 kHz (about 3x the "
        "CPU and 4x the WAV bytes of standard).",
    ),
]
InstrumentOpt = Annotated[
    Instrument,
    typer.Option(
        help="The instrument the audio plays on, as a General MIDI program ("
        + ", ".join(f"{i.value} {p}" for i, p in GM_PROGRAM.items())
        + ").",
    ),
]
DEFAULT_INSTRUMENT_OPT = DEFAULT_INSTRUMENT

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    views.err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line and an exit code; a traceback is for bugs only."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TunebatchError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise fail(f"invalid {where}: {first['msg']}", 2) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    wrapper.handles_errors = True  # type: ignore[attr-defined]  # checked by the CLI's tests
    return wrapper


@functools.cache
def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"bad TUNEBATCH_ setting {first['loc']}: {first['msg']}", 2) from None


def backend() -> Backend:
    """Where this command's work runs, embedded or distributed (decided once, by the settings)."""
    from producer.backend import make_backend

    return make_backend(settings())


def job_context() -> Context:
    """The records and store of whichever mode is configured."""
    return backend().context


def store() -> ArtifactStore:
    """The artifact store of the settings (local disk or the bucket); no Redis needed."""
    from common.store.open import make_store

    return make_store(settings())
