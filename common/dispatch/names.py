"""Task names and the queue each runs on: the contract between whoever enqueues and the worker.

Jobs are sent by name (`common.dispatch.enqueue`), so a sender imports no task code (and so no
TensorFlow). Each resource has its own queue: ``gpu`` (train, generate) and ``cpu`` (render,
finalize, schedule firings), routed by task name.
"""

from __future__ import annotations

TRAIN = "tunebatch.train"
GENERATE = "tunebatch.generate_chunk"
RENDER = "tunebatch.render_tune"
FINALIZE = "tunebatch.finalize_batch"
#: Scheduled dataset-wide generation (`worker.schedules`): plan and submit one batch, after a
#: retraining run when the corpus changed (the training run's chain ends in SUBMIT_SCHEDULED).
RUN_SCHEDULE = "tunebatch.run_schedule"
SUBMIT_SCHEDULED = "tunebatch.submit_scheduled"

GPU_QUEUE = "gpu"
CPU_QUEUE = "cpu"
QUEUES: dict[str, str] = {
    TRAIN: GPU_QUEUE,
    GENERATE: GPU_QUEUE,
    RENDER: CPU_QUEUE,
    FINALIZE: CPU_QUEUE,
    RUN_SCHEDULE: CPU_QUEUE,
    SUBMIT_SCHEDULED: CPU_QUEUE,
}
