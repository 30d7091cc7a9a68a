#!/usr/bin/env bash
# Real coding clients for the `clients` tests, installed once into a machine-level cache outside
# the clone: ${CARROT_CACHE_DIR:-$HOME/.cache/carrot}/clients/npm (one prefix) and venv-<command>
# per PyPI client (aider-chat and llm pin conflicting dependencies). Versions come from
# scripts/clients.txt only; a stamp holding that file's content makes a second run a no-op.
# Telemetry and update checks are switched off by the tests' environment (tests/clients.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# The PyPI clients' own venvs: Python 3.11 (their pins were chosen on it; the gateway's 3.12 is not needed here)
PYTHON=${CLIENTS_PYTHON:-python3.11}
DEST=${CARROT_CACHE_DIR:-$HOME/.cache/carrot}/clients
PINS=scripts/clients.txt
STAMP=$DEST/installed.txt
# shellcheck source=scripts/pyinstall.sh
. scripts/pyinstall.sh
# The stamp holds the pins and the Node.js version (a native module is built for one Node ABI).
stamp() { cat "$PINS"; echo "# node $(node -v)"; }
if [ -f "$STAMP" ] && cmp -s <(stamp) "$STAMP"; then
    exit 0
fi
mkdir -p "$DEST/npm"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false DISABLE_TELEMETRY=1
npm_specs=$(awk '$1 == "npm" {print $2 "@" $3}' "$PINS")
# shellcheck disable=SC2086 # one word per package spec
npm install --prefix "$DEST/npm" --no-save --loglevel=error $npm_specs
# Continue's autocomplete engine (a library the VS Code extension bundles) in a prefix of its own. Its
# dependencies' install scripts download prebuilt binaries from GitHub (unreachable here), so they are off
# and the one native module autocomplete loads, sqlite3 (its completion cache), is compiled against the
# headers of the Node.js that runs it.
node_dir=$(node -p "require('path').resolve(process.execPath, '../..')")
awk '$1 == "npmlib" {print $2, $3, $4}' "$PINS" | while read -r pkg version dir; do
    test -f "$node_dir/include/node/node_api.h" || {
        echo "setup_clients: no Node.js headers in $node_dir/include/node to build sqlite3 for $pkg" \
             "(Debian: apt-get install libnode-dev)" >&2; exit 1; }
    npm install --prefix "$DEST/$dir" --no-save --loglevel=error --ignore-scripts "$pkg@$version"
    (cd "$DEST/$dir/node_modules/sqlite3" &&
        ../.bin/node-gyp rebuild --nodedir="$node_dir" --python="$(command -v "$PYTHON")" --loglevel=error >/dev/null)
done
awk '$1 == "pip" {print $2, $3, $4}' "$PINS" | while read -r pkg version cmd; do
    venv=$DEST/venv-$cmd
    test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
    pyinstall "$venv" "$pkg==$version"
done
awk '$1 != "#" && NF == 4 {print $1, $4}' "$PINS" | while read -r kind cmd; do
    case $kind in npm) bin=$DEST/npm/node_modules/.bin/$cmd ;; pip) bin=$DEST/venv-$cmd/bin/$cmd ;;
                  npmlib) bin=$DEST/$cmd/node_modules/sqlite3/build/Release/node_sqlite3.node ;; esac
    test -e "$bin" || { echo "setup_clients: $cmd missing after install ($bin)" >&2; exit 1; }
done
stamp > "$STAMP"
