#!/bin/sh
# Container entrypoint: start the off-the-shelf LiteLLM proxy with our config.
# LiteLLM treats a set-but-empty DATABASE_URL as a database, refuses to start on an empty
# REDIS_URL (router_settings.redis_url), takes an empty UI_PASSWORD as the UI password and an
# empty LITELLM_SALT_KEY as the key: compose passes empties for "not set", so they are unset
# here (empty DATABASE_URL = master key only; empty REDIS_URL = in-memory cache and counters).
set -eu
for var in DATABASE_URL REDIS_URL UI_PASSWORD LITELLM_SALT_KEY; do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then unset "$var"; fi
done
exec litellm --config "${LITELLM_CONFIG:-/app/litellm_config.yaml}" --port "${PORT:-4000}" "$@"
