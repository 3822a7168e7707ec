# xlsr-stream server image: the shipped model and LM inside, CPU torch by default.
#
#   docker build -t xlsr-stream .
#   docker run --rm -p 2700:2700 xlsr-stream                      # shipped model, port 2700
#   docker run --rm -p 2700:2700 -v /srv/ckpt:/models:ro \
#       -e XLSR_STREAM_MODEL=/models/my-checkpoint xlsr-stream --max-connections 32
#   # CUDA: a CUDA runtime base with Python, and torch from the matching index
#   docker build -t xlsr-stream:cuda --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run --gpus all -p 2700:2700 xlsr-stream:cuda --device cuda
#
# Every step lives in deploy/image.sh, which tests/test_deploy.py runs outside a
# container (build, serve, healthcheck), so this file only orders them.

ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# kenlm's Python module builds from source; a CUDA base brings no Python of its own.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake zlib1g-dev libbz2-dev liblzma-dev \
 && (command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3 python3-venv python3-dev) \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN XLSR_TORCH_INDEX="${TORCH_INDEX}" deploy/image.sh build /opt/xlsr-stream

FROM ${BASE}
RUN apt-get update \
 && (command -v python3 >/dev/null || apt-get install -y --no-install-recommends python3) \
 && apt-get install -y --no-install-recommends libsndfile1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 xlsr \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xlsr
COPY --from=build /opt/xlsr-stream /opt/xlsr-stream
COPY deploy/image.sh /opt/xlsr-stream/image.sh
# Models mount at /models (read-only is enough): point XLSR_STREAM_MODEL at a folder there.
ENV XLSR_PREFIX=/opt/xlsr-stream \
    XLSR_STREAM_MODEL=/opt/xlsr-stream/models/en-small \
    XLSR_HOST=0.0.0.0 \
    XLSR_PORT=2700 \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 2700
# SIGTERM drains: live streams get their finals (up to --drain-timeout, 30 s),
# so give `docker stop` more than that: docker stop -t 40.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["/opt/xlsr-stream/image.sh", "healthcheck"]
ENTRYPOINT ["/opt/xlsr-stream/image.sh", "serve"]
CMD []
