"""Code shared by the producer and the workers: pure functions over corpora, models and tunes.

Nothing here imports Celery or the CLI; modules that need TensorFlow (model, sampling, training)
import it at module level, so the producer only imports them lazily in embedded mode.
"""
