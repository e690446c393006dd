# syntax=docker/dockerfile:1
# GPU worker: trains and generates (queue `gpu`) with TensorFlow on CUDA.
#
# Base: plain python:3.11-slim-bookworm, not an nvidia/cuda or tensorflow/tensorflow image.
# TensorFlow's `and-cuda` extra (tunebatch's `gpu` extra) installs CUDA and cuDNN as pip wheels
# matched to that TensorFlow release, and TensorFlow finds them in site-packages; a CUDA base
# image would carry a second copy. The host needs only the NVIDIA driver and the NVIDIA
# Container Toolkit (Docker) or device plugin (Kubernetes). Without a GPU the image still runs,
# on the CPU.
#
# Build from the repository root:  docker build -f docker/gpu-worker.Dockerfile -t tunebatch/gpu-worker .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build ------------------------------------------------------------------------------------
# The requirement list in a stage of its own: the install layer below is keyed on the list's
# content (COPY --from compares file checksums), so editing pyproject.toml's tools, comments
# or version does not reinstall TensorFlow and CUDA.
FROM ${PYTHON_IMAGE} AS requirements
# Build stages are labelled so `make images-prune` removes them and nothing else (see Makefile).
LABEL org.tunebatch.stage=build
WORKDIR /src
COPY pyproject.toml docker/requirements.py ./
# tensorflow makes way for the gpu extra's tensorflow[and-cuda] (the same wheel plus the CUDA
# libraries), so pip sees one requirement for it.
RUN python requirements.py pyproject.toml --without tensorflow --extra gpu > requirements.txt

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
# abc2midi checks every generated tune (--valid-only) and the validity rate after training,
# inside bubblewrap (common/render/sandbox.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends abcmidi=20230208+ds1-1 \
        bubblewrap=0.8.0-2+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tunebatch \
    && useradd --system --uid 10001 --gid tunebatch --home-dir /home/tunebatch --create-home \
        --shell /usr/sbin/nologin tunebatch \
    && install -d -o tunebatch -g tunebatch /var/lib/tunebatch
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tunebatch /opt/tunebatch
# NVIDIA_DRIVER_CAPABILITIES tells the container toolkit which driver libraries to mount
# (libcuda for compute, nvidia-smi for utility). NVIDIA_VISIBLE_DEVICES is deliberately not set:
# the device request (compose) or the device plugin (Kubernetes) chooses the GPUs.
ENV PATH=/opt/tunebatch/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/tunebatch \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/tunebatch \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TUNEBATCH_DATA_DIR=/var/lib/tunebatch
WORKDIR /home/tunebatch
USER 10001:10001
ENTRYPOINT ["worker"]
CMD ["gpu", "--concurrency", "1", "--name", "gpu@%h"]
