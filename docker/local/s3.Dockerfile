# moto's S3 server, the stand-in for MinIO in docker/compose.local.yaml (MinIO's image cannot be
# pulled there). Its state is in memory: it is for trying the stack out and for
# `make compose-test`, not for keeping tunes.
FROM local/python:3.11-bookworm
RUN python -m venv /opt/moto \
    && /opt/moto/bin/pip install --no-cache-dir 'moto[server]~=5.2.5' \
    && useradd --system --uid 10002 --no-create-home --shell /usr/sbin/nologin moto
USER 10002
EXPOSE 9000
CMD ["/opt/moto/bin/python", "-m", "moto.server", "-H", "0.0.0.0", "-p", "9000"]
