#!/bin/sh
# Test infrastructure for LiteLLM's database mode (tests/test_dbmode_*.py): Prisma's native
# engines cannot be downloaded here, so the tests run prisma-python on Prisma's WebAssembly
# engines (tests/dbmode/). Production uses the native engines (compose, the image).
#
# Installs, from the npm registry only, the packages pinned in tests/dbmode/package-lock.json
# (the wasm query/schema engines, their pg driver adapters, the Prisma CLI 5.17.0 that
# prisma-python 0.15 drives; no install scripts run) into a machine-level cache keyed by the lock
# file, outside the clone: ${CARROT_CACHE_DIR:-$HOME/.cache/carrot}/dbmode/<key>. Then generates
# prisma-python's client from LiteLLM's schema.prisma into the venv (skipped when already
# generated from the same schema). Idempotent; a second run takes about a second.
# Also installs Chromium (Debian package; needs root) for the admin-UI test, which drives it with
# the playwright wheel (never `playwright install`); `--engines-only` skips that (the tests' own
# fixture calls it so). Prints the cache directory (CARROT_DBMODE_HOME) on the last line.
set -eu
if [ "${1:-}" != "--engines-only" ] && ! [ -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
SRC=$ROOT/tests/dbmode
CACHE=${CARROT_CACHE_DIR:-$HOME/.cache/carrot}/dbmode
KEY=$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -c1-16)
HOME_DIR=$CACHE/$KEY

command -v node >/dev/null 2>&1 || { echo "setup_dbmode: node is missing (Debian package nodejs)" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "setup_dbmode: npm is missing (Debian package npm)" >&2; exit 1; }

if [ ! -f "$HOME_DIR/.complete" ]; then
    mkdir -p "$CACHE"
    TMP=$(mktemp -d "$CACHE/.tmp-$KEY-XXXXXX")
    cp "$SRC/package.json" "$SRC/package-lock.json" "$TMP/"
    (cd "$TMP" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$TMP/.complete"
    # another run may have finished first: keep its copy
    mv -T "$TMP" "$HOME_DIR" 2>/dev/null || rm -rf "$TMP"
fi

# found without importing litellm (its import fetches a price list over the network)
pkg() { "$PY" -c "import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])" "$1"; }
SCHEMA=$(pkg litellm)/proxy/schema.prisma
STAMP=$(pkg prisma)/.carrot-generated
BIN=$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))')
WANT=$(sha256sum "$SCHEMA" | cut -c1-64)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    # the Prisma CLI looks for both native engines first; point it at ours so it downloads nothing
    PRISMA_BINARY_CACHE_DIR=$HOME_DIR CARROT_DBMODE_HOME=$HOME_DIR \
    PRISMA_QUERY_ENGINE_BINARY=$SRC/query_engine.mjs PRISMA_SCHEMA_ENGINE_BINARY=$SRC/schema_engine_stub.sh \
    PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING=1 CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 \
    npm_config_ignore_scripts=true PATH="$BIN:$PATH" \
        "$PY" -m prisma generate --schema "$SCHEMA" >/dev/null
    echo "$WANT" >"$STAMP"
fi
echo "$HOME_DIR"
