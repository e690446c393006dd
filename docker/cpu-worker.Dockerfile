# syntax=docker/dockerfile:1
# CPU worker: renders tunes (queue `cpu`) with abc2midi, timidity + freepats (or fluidsynth + the
# GM soundfont), abcm2ps, rsvg-convert (PDF), oggenc, lame and flac. It also runs Celery beat
# (docker/compose.yaml, k8s/base/beat.yaml), the `cpu-fallback` compose profile's gpu-queue worker
# (TensorFlow runs on the CPU when no GPU is visible) and the producer commands that need the
# whole package (`producer corpus import --valid-only`).
#
# Build from the repository root:  docker build -f docker/cpu-worker.Dockerfile -t tunebatch/cpu-worker .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtualenv with the dependencies (one cached layer), then the project ----------
# The requirement list in a stage of its own: the install layer below is keyed on the list's
# content (COPY --from compares file checksums), so editing pyproject.toml's tools, comments
# or version does not reinstall TensorFlow.
FROM ${PYTHON_IMAGE} AS requirements
# Build stages are labelled so `make images-prune` removes them and nothing else (see Makefile).
LABEL org.tunebatch.stage=build
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py pyproject.toml > requirements.txt

FROM ${PYTHON_IMAGE} AS build
# Build stages are labelled so `make images-prune` removes them and nothing else (see Makefile).
LABEL org.tunebatch.stage=build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY --from=requirements /src/requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml ./
COPY README.md ./
COPY common ./common
COPY producer ./producer
COPY worker ./worker
# The project in a folder of its own (not the venv), so the runtime stage copies the big
# dependency venv from a cached layer and only this small folder changes with the code.
RUN pip install --no-cache-dir --no-deps --target /opt/tunebatch .

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# Versions are bookworm's (unchanged since its release); `apt-cache policy NAME` in a
# python:3.11-slim-bookworm container shows the current ones when a bump is needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        abcmidi=20230208+ds1-1 \
        timidity=2.14.0-8.1 \
        freepats=20060219-4 \
        abcm2ps=8.14.14-1 \
        vorbis-tools=1.4.2-1+b1 \
        lame=3.100-6 \
        flac=1.4.2+ds-2 \
        librsvg2-bin=2.54.7+dfsg-1~deb12u* \
        fluidsynth=2.3.1-2 \
        fluid-soundfont-gm=3.1-5.3 \
        bubblewrap=0.8.0-2+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tunebatch \
    && useradd --system --uid 10001 --gid tunebatch --home-dir /home/tunebatch --create-home \
        --shell /usr/sbin/nologin tunebatch \
    && install -d -o tunebatch -g tunebatch /var/lib/tunebatch
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tunebatch /opt/tunebatch
ENV PATH=/opt/tunebatch/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/tunebatch \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/tunebatch \
    MPLCONFIGDIR=/tmp/matplotlib \
    TUNEBATCH_DATA_DIR=/var/lib/tunebatch \
    TUNEBATCH_TIMIDITY_CONFIG=/etc/timidity/freepats.cfg
WORKDIR /home/tunebatch
# Numeric, so Kubernetes can check runAsNonRoot without looking the name up.
USER 10001:10001
ENTRYPOINT ["worker"]
CMD ["cpu", "--name", "cpu@%h"]
