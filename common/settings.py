"""The one settings object of tunebatch.

Read once from the environment (prefix ``TUNEBATCH_``) at the edge — the CLI or the worker's start —
and passed down as an argument; no other module reads the environment. Every field has a default
that works on a fresh machine with no servers: no broker means embedded mode, no bucket means the
local artifact directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError


class Settings(BaseSettings):
    """Configuration for producer and workers alike."""

    model_config = SettingsConfigDict(env_prefix="TUNEBATCH_", extra="ignore")

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("artifacts"),
        description="Local artifact store (embedded mode) and the root of caches.",
    )
    cache_dir: Path | None = Field(
        default=None, description="Model and corpus cache; defaults to <data_dir>/cache."
    )

    # --- distributed mode ---------------------------------------------------------------------
    broker_url: str | None = Field(
        default=None, description="redis:// URL; unset means everything runs in-process."
    )
    visibility_timeout_s: int = Field(
        default=300,
        ge=5,
        description="A job whose worker died goes back to the queue this long after the worker's "
        "last lease renewal; running jobs renew theirs, so it need not outlast any job.",
    )
    train_time_limit_s: int = Field(
        default=24 * 3600,
        ge=600,
        description="Hard time limit of one training job (a stopped run resumes from its last "
        "epoch checkpoint).",
    )
    startup_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a starting worker waits for Redis and the bucket to answer before "
        "it exits with the error (a wrong setting fails at once).",
    )
    beat_max_loop_interval_s: int = Field(
        default=30,
        ge=1,
        description="Longest sleep of Celery beat between ticks (Celery's beat_max_loop_interval): "
        "a schedule added or edited is seen within this long, and beat renews its Redis lock at "
        "least this often.",
    )
    beat_lock_timeout_s: int = Field(
        default=150,
        ge=3,
        description="Lifetime of beat's Redis lock (redbeat_lock_timeout), renewed every tick; at "
        "least 3 loop intervals, so a beat slowed by load keeps it. A standby beat takes over "
        "this long after the running one died without releasing it (a beat restarted on the "
        "same host takes its own dead predecessor's lock at once).",
    )
    beat_heartbeat_file: Path | None = Field(
        default=None,
        description="Where beat writes the time of its last tick that reached Redis, for its "
        "health check (`worker beat-health`); defaults to <temp dir>/tunebatch-beat.json.",
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Deliveries before a job is dead-lettered."
    )
    chunk_size: int = Field(default=256, ge=1, description="Tunes per generation job.")

    # --- S3-compatible bucket -----------------------------------------------------------------
    s3_bucket: str | None = Field(default=None, description="Bucket name; unset means local disk.")
    s3_endpoint_url: str | None = Field(default=None, description="e.g. http://minio:9000")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. 'team-a/'.")

    # --- generation ---------------------------------------------------------------------------
    sample_batch_size: int = Field(
        default=256, ge=1, description="Tunes advanced together per step (B)."
    )
    steps_per_call: int = Field(
        default=32, ge=1, description="Steps run inside one compiled call before Python looks."
    )

    # --- quality ------------------------------------------------------------------------------
    musicality_reference: str = Field(
        default="oneills",
        description="Imported corpus whose held-out (validation) tunes are the human reference of "
        "the musicality figures in manifests and reports; '' for none. One reference for every "
        "model, so that their figures compare.",
    )

    # --- rendering ----------------------------------------------------------------------------
    abc2midi: str = "abc2midi"
    timidity: str = "timidity"
    abcm2ps: str = "abcm2ps"
    timidity_config: Path = Field(
        default=Path("/etc/timidity/freepats.cfg"),
        description="Soundfont config; named explicitly because timidity's default changes "
        "when another soundfont package is installed.",
    )
    render_timeout_s: float = Field(default=60.0, gt=0, description="Wall time per tool run.")
    render_cpu_s: int = Field(default=60, ge=1, description="CPU seconds per tool run.")
    render_memory_bytes: int = Field(default=1 << 30, description="Address-space limit per tool.")
    render_max_output_bytes: int = Field(
        default=128 << 20, description="Largest file a tool may write (WAV of ~12 min)."
    )
    max_midi_seconds: float = Field(default=600.0, gt=0, description="Longest tune synthesised.")
    synth: Literal["timidity", "fluidsynth"] = Field(
        default="timidity",
        description="MIDI → WAV synthesiser: timidity with timidity_config (freepats, small and "
        "everywhere) or fluidsynth with the General MIDI soundfont (fuller sound, ~150 MB).",
    )
    fluidsynth: str = "fluidsynth"
    soundfont: Path = Field(
        default=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
        description="SoundFont 2 file for fluidsynth (Debian package fluid-soundfont-gm).",
    )
    loudness_normalise: bool = Field(
        default=True,
        description="Bring every WAV to loudness_target_lufs before encoding: the synths' raw "
        "output is quiet (peaks at -25 to -15 dBFS) and varies from tune to tune.",
    )
    loudness_target_lufs: float = Field(
        default=-16.0, ge=-40.0, le=-5.0, description="Integrated loudness (ITU-R BS.1770-4)."
    )
    loudness_peak_dbfs: float = Field(
        default=-1.0,
        ge=-20.0,
        le=0.0,
        description="Ceiling for the sample peak after normalising; the gain is lowered rather "
        "than clipping, so a very dynamic tune may end up quieter than the target.",
    )
    sandbox: Literal["bwrap", "auto", "rlimits"] = Field(
        default="bwrap",
        description="Render tool isolation (common/render/sandbox.py): bwrap = always, and a "
        "worker refuses to start where bubblewrap cannot run; auto = bwrap where it runs, else "
        "rlimits with a warning; rlimits = resource limits only, no filesystem/network isolation.",
    )
    bwrap: str = Field(default="bwrap", description="bubblewrap binary (Debian 'bubblewrap').")
    render_workers: int = Field(default=0, ge=0, description="Parallel renders; 0 = CPU count.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO",
        description="Log level of workers and beat (their --loglevel option wins over it).",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Worker log lines: text for people, or json (one object per line, with the "
        "task, batch and tune ids) for a log pipeline.",
    )

    # --- metrics (worker/metrics.py) ----------------------------------------------------------
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of a worker's Prometheus /metrics endpoint; unset means none.",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="Where the pool's processes keep their samples (emptied at start); "
        "defaults to <temp dir>/tunebatch-metrics.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_s3(self) -> Settings:
        if self.s3_bucket and bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            raise ValueError(
                "set both TUNEBATCH_S3_ACCESS_KEY_ID and TUNEBATCH_S3_SECRET_ACCESS_KEY, "
                "or neither (to use the default AWS credential chain)"
            )
        return self

    @model_validator(mode="after")
    def _check_beat(self) -> Settings:
        check_beat_timing(self.beat_max_loop_interval_s, self.beat_lock_timeout_s)
        return self

    @property
    def cache_path(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    @property
    def distributed(self) -> bool:
        return self.broker_url is not None


# How long Celery beat may sleep between ticks, against how long its Redis lock lives: beat
# (celery-redbeat) renews its lock at every tick and sleeps at most the loop interval between
# ticks. If the lock can expire while beat sleeps, a second beat may take it and the first crashes
# at its next renewal (``LockNotOwnedError``) without having fired anything; a tick late because
# the machine is loaded must still find its lock. A settings rule, also checked against beat's
# own --max-interval (`worker.beat`).
#: The lock must live at least this many loop intervals.
LOCK_MARGIN = 3


def check_beat_timing(loop_interval_s: float, lock_timeout_s: float) -> None:
    """Raise `ConfigError` unless the lock outlives `LOCK_MARGIN` loop intervals."""
    if lock_timeout_s < LOCK_MARGIN * loop_interval_s:
        raise ConfigError(
            f"beat's Redis lock would expire while beat sleeps: the lock lives "
            f"{lock_timeout_s:g} s (TUNEBATCH_BEAT_LOCK_TIMEOUT_S) but beat may sleep "
            f"{loop_interval_s:g} s between renewals (TUNEBATCH_BEAT_MAX_LOOP_INTERVAL_S or "
            f"--max-interval); make the lock at least {LOCK_MARGIN} times the loop interval"
        )
