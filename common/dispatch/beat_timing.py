"""How long Celery beat may sleep between ticks, against how long its Redis lock lives.

Beat (celery-redbeat) renews its lock at every tick, and sleeps at most the loop interval
between ticks. If the lock can expire while beat sleeps, a second beat may take it and the first
crashes at its next renewal (``LockNotOwnedError``) without having fired anything. So the lock
must outlive several loop intervals: a tick that is late because the machine is loaded, or
because sending the due tasks took a while, must still find its lock.
"""

from __future__ import annotations

from common.errors import ConfigError

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
