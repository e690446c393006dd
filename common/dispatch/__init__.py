"""What producer and workers both need to hand jobs over through Celery."""
