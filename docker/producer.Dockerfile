# syntax=docker/dockerfile:1
# Producer: the `producer` CLI for a distributed deployment (submit-batch, train, status, watch,
# fetch, url, list, cancel, retry, model list): a ~190 MB virtualenv on the slim base, where the
# worker images carry TensorFlow (and CUDA) in several GB.
#
# Why `--no-deps` plus a list: in distributed mode the producer only writes job records to Redis,
# enqueues jobs by task name and reads the bucket; it never imports TensorFlow (ruff's
# banned-api rule keeps it out of producer/), so the image leaves out tensorflow, keras and
# music21. The dependency list still comes from pyproject.toml (docker/requirements.py), so the
# pins stay in one place. Commands that need what is left out run in the cpu-worker image, which
# has the whole package: `producer corpus import` (music21, abc2midi) and `producer model
# evaluate` (TensorFlow). See docs/deploy.md.
#
# Build from the repository root:  docker build -f docker/producer.Dockerfile -t tunebatch/producer .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Build stages are labelled so `make images-prune` removes them and nothing else (see Makefile).
LABEL org.tunebatch.stage=build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py pyproject.toml --without tensorflow \
        --without keras --without music21 > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
COPY README.md ./
# No worker/: the producer sends jobs by task name through common.dispatch and imports nothing
# from the worker package (tests/producer/test_imports.py).
COPY common ./common
COPY producer ./producer
# The project in a folder of its own (not the venv), so the runtime stage copies the big
# dependency venv from a cached layer and only this small folder changes with the code.
RUN pip install --no-cache-dir --no-deps --target /opt/tunebatch .

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 tunebatch \
    && useradd --system --uid 10001 --gid tunebatch --home-dir /home/tunebatch --create-home \
        --shell /usr/sbin/nologin tunebatch
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tunebatch /opt/tunebatch
ENV PATH=/opt/tunebatch/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/tunebatch \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/tunebatch \
    TUNEBATCH_DATA_DIR=/home/tunebatch/artifacts
WORKDIR /home/tunebatch
USER 10001:10001
ENTRYPOINT ["producer"]
CMD ["--help"]
