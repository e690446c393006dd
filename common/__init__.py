"""Code shared by the producer and the workers: corpora, models, tunes, records and the hand-over.

No CLI here. Celery appears in one package only, `common.dispatch` (task names, the app's
configuration, enqueue), which both sides need to agree on; everything else is plain functions.
Modules that need TensorFlow (model, sampling, training) import it at module level, so the
producer imports them lazily, in embedded mode only.
"""
