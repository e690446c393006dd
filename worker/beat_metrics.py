"""Prometheus metrics of Celery beat, served from ``:<metrics_port>/metrics`` of the beat process.

Beat is one process (no prefork pool), so these live in prometheus_client's default registry,
not in the workers' multiprocess files (`worker.metrics`). The alert rules in
k8s/components/monitoring/prometheusrules.yaml read them:

* ``tunebatch_beat_last_tick_timestamp_seconds``: the last tick that reached Redis (a beat that
  stopped ticking, or that cannot reach Redis, lets it fall behind ``time()``);
* ``tunebatch_beat_lock_held``: 1 while this beat holds redbeat's lock (fires), 0 on standby;
* ``tunebatch_beat_firings_total{schedule}`` and ``tunebatch_beat_missed_slots_total{schedule}``;
* ``tunebatch_beat_firing_lateness_seconds{schedule}``: how long after its slot the last firing
  went out (seconds for a firing on time, the outage's length for one caught up after it);
* ``tunebatch_beat_redis_errors_total``: ticks that could not reach Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

#: The metrics of this process, by port: prometheus_client's registry takes each name once.
_STARTED: dict[int, BeatMetrics] = {}


@dataclass
class BeatMetrics:
    """Beat's metrics; every method is a no-op when metrics are off (no port)."""

    last_tick: Gauge | None = None
    lock_held: Gauge | None = None
    firings: Counter | None = None
    missed: Counter | None = None
    lateness: Gauge | None = None
    redis_errors: Counter | None = None

    @classmethod
    def start(cls, port: int | None) -> BeatMetrics:
        """Create the metrics and serve them on `port`, once per process (Celery builds the
        scheduler twice: once for the banner); without a port, record nothing."""
        if port is None:
            return cls()
        if port not in _STARTED:
            _STARTED[port] = cls._serve(port)
        return _STARTED[port]

    @classmethod
    def _serve(cls, port: int) -> BeatMetrics:
        from prometheus_client import Counter, Gauge, start_http_server

        metrics = cls(
            last_tick=Gauge(
                "tunebatch_beat_last_tick_timestamp_seconds",
                "Unix time of beat's last tick that reached Redis.",
            ),
            lock_held=Gauge(
                "tunebatch_beat_lock_held", "1 while this beat holds redbeat's lock (and fires)."
            ),
            firings=Counter(
                "tunebatch_beat_firings", "Schedule firings sent by beat.", ["schedule"]
            ),
            missed=Counter(
                "tunebatch_beat_missed_slots",
                "Slots of a schedule that did not fire (an outage spanning several: the latest "
                "fires once, the older ones are missed).",
                ["schedule"],
            ),
            lateness=Gauge(
                "tunebatch_beat_firing_lateness_seconds",
                "Seconds between a schedule's slot and its last firing.",
                ["schedule"],
            ),
            redis_errors=Counter(
                "tunebatch_beat_redis_errors", "Beat ticks that could not reach Redis."
            ),
        )
        start_http_server(port)
        log.info("beat: metrics on :%d/metrics", port)
        return metrics

    def ticked(self, at: float | None, *, holds_lock: bool) -> None:
        if self.last_tick is not None and at is not None:
            self.last_tick.set(at)
        if self.lock_held is not None:
            self.lock_held.set(1 if holds_lock else 0)

    def fired(self, schedule: str, *, late_s: float, missed: int) -> None:
        if self.firings is not None and self.missed is not None and self.lateness is not None:
            self.firings.labels(schedule).inc()
            self.lateness.labels(schedule).set(late_s)
            if missed:
                self.missed.labels(schedule).inc(missed)

    def redis_error(self) -> None:
        if self.redis_errors is not None:
            self.redis_errors.inc()
