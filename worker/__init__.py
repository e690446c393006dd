"""Celery workers: the GPU role trains and generates, the CPU role renders and finalizes."""
