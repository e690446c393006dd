"""Test-only: a render that kills its worker process, for one tune of batches seeded with
`POISON_SEED`. Imported by chaos test workers only (``worker cpu --include tests.chaos.poison``).

It wraps `common.jobs.rendering.render_tune`, which `worker.tasks.render_tune` calls after counting
the
delivery, so the poison behaves like a real render that segfaults or is OOM-killed: the attempt
is counted, then the process dies.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from common.jobs import rendering
from common.jobs.context import Context

POISON_SEED = 666
POISON_TUNE = "t000003"

_real_render = rendering.render_tune


def _render_or_die(ctx: Context, batch_id: str, tid: str, *args: Any, **kw: Any) -> Any:
    if tid == POISON_TUNE and ctx.records.get_batch(batch_id).spec.seed == POISON_SEED:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_render(ctx, batch_id, tid, *args, **kw)


rendering.render_tune = _render_or_die
