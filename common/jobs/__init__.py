"""The jobs as plain functions both the embedded runner and the Celery tasks call."""
