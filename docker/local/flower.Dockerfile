# Flower (Celery's dashboard) for docker/compose.local.yaml, where mher/flower cannot be pulled:
# the same release, installed from PyPI on the local Python base. Runs as user 10003.
FROM local/python:3.11-bookworm
RUN python -m venv /opt/flower \
    && /opt/flower/bin/pip install --no-cache-dir 'flower==2.0.1' 'celery[redis]~=5.7.0' \
    && useradd --system --uid 10003 --no-create-home --shell /usr/sbin/nologin flower
ENV PATH=/opt/flower/bin:$PATH
WORKDIR /tmp
USER 10003
EXPOSE 5555
CMD ["celery", "flower"]
