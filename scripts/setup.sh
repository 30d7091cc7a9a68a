#!/usr/bin/env bash
# `make setup` / `make test-deps`: the venv, the project installed into it (editable, EXTRAS e.g.
# "[test]"), and the offline embedding model; prints how long each phase took. Idempotent.
set -euo pipefail
here=${BASH_SOURCE[0]%/*}  # no dirname: the PATH may be bare (tests/test_firstrun_setup.py)
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
cd "$here/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-}
PY=$VENV/bin/python
# shellcheck source=scripts/pyinstall.sh
. scripts/pyinstall.sh

phase() {  # phase NAME CMD...: run CMD, then print NAME and its duration
    local name=$1 t0=$EPOCHREALTIME
    shift
    "$@"
    awk -v n="$name" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "setup: %-13s %6.1f s\n", n, b - a }'
}

if [ ! -x "$PY" ]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        echo "setup: Python 3.11 is required; '$PYTHON' is missing or another version." \
             "Install Python 3.11 and run: make PYTHON=/path/to/python3.11 ..." >&2
        exit 1
    fi
    phase venv "$PYTHON" -m venv "$VENV"
fi
phase "install$EXTRAS" pyinstall "$VENV" -e ".$EXTRAS"
# Byte-compile what was installed (uv does not; files already compiled are skipped in seconds). With
# PYTHONDONTWRITEBYTECODE set, as on many CI hosts, nothing is cached at import: every proxy start
# would compile LiteLLM's sources again (~10 s of CPU). -qq, status ignored: a package may ship files
# that are not meant to compile (test fixtures, templates); they are never imported.
compile_venv() {
    local site
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    [ -d "$site" ] || { echo "setup: no site-packages folder at '$site'" >&2; return 1; }
    "$PY" -m compileall -qq -j 0 "$site" >/dev/null || true
}
phase bytecode compile_venv
phase "model" bash -c 'PY=$1 bash scripts/setup_models.sh >/dev/null' _ "$PY"
