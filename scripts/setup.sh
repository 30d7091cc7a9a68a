#!/usr/bin/env bash
# `make setup` / `make test-deps`: the venv, the project installed into it (editable, EXTRAS e.g.
# "[test]"), and the offline embedding model; prints how long each phase took. Idempotent.
set -euo pipefail
here=${BASH_SOURCE[0]%/*}  # no dirname: the PATH may be bare (tests/test_firstrun_setup.py)
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
cd "$here/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-}
PY=$VENV/bin/python
# shellcheck source=scripts/pyinstall.sh
. scripts/pyinstall.sh

phase() {  # phase NAME CMD...: run CMD, then print NAME and its duration
    local name=$1 t0=${EPOCHREALTIME:-$SECONDS}  # (bash < 5 has no EPOCHREALTIME: whole seconds)
    shift
    "$@"
    awk -v n="$name" -v a="$t0" -v b="${EPOCHREALTIME:-$SECONDS}" 'BEGIN { printf "setup: %-13s %6.1f s\n", n, b - a }'
}

# Python 3.12: 3.11's contextvars can crash the gateway under load (CPython gh-148891, not fixed in 3.11;
# tests/test_runtime_python.py). PYTHON if given, else python3.12 on PATH, else pyenv's newest 3.12 build.
is_312() { "$1" -I -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }
find_python() {
    if [ -n "${PYTHON:-}" ]; then
        is_312 "$PYTHON" && echo "$PYTHON"
        return 0
    fi
    is_312 python3.12 && { echo python3.12; return 0; }  # (pyenv's shim fails this outside a 3.12 env)
    local build best="" patch best_patch=-1
    for build in "${PYENV_ROOT:-${HOME:-/nonexistent}/.pyenv}"/versions/3.12.*/bin/python3.12; do
        patch=${build%/bin/python3.12}
        patch=${patch##*/3.12.}
        case $patch in '' | *[!0-9]*) continue ;; esac  # 3.12.4, not 3.12.4t or a venv named 3.12.x
        if [ "$patch" -gt "$best_patch" ] && is_312 "$build"; then
            best=$build best_patch=$patch
        fi
    done
    [ -z "$best" ] || echo "$best"
}
has_entries() {  # whether folder $1 holds anything, dotfiles too (an unmatched pattern stays itself)
    local e
    for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
        if [ -e "$e" ] || [ -L "$e" ]; then return 0; fi
    done
    return 1
}
if [ ! -e "$VENV/pyvenv.cfg" ] || ! is_312 "$PY"; then
    found=$(find_python)
    if [ -z "$found" ]; then
        if [ -n "${PYTHON:-}" ]; then
            echo "setup: Python 3.12 is required; PYTHON='$PYTHON' is missing or another version." \
                 "Run: make PYTHON=/path/to/python3.12 ..." >&2
        else
            echo "setup: Python 3.12 is required; found none (python3.12 on PATH, pyenv's versions)." \
                 "Install Python 3.12 and run: make PYTHON=/path/to/python3.12 ..." >&2
        fi
        exit 1
    fi
    if [ -e "$VENV/pyvenv.cfg" ]; then  # a venv (ours to remove) of another Python, or of one since removed
        echo "setup: $VENV holds another Python than 3.12 (or its Python is gone): making it again" >&2
        rm -rf "$VENV"
    elif has_entries "$VENV"; then
        echo "setup: $VENV exists and is no venv; not touching it: remove it or set VENV" >&2
        exit 1
    fi
    phase venv "$found" -m venv "$VENV"
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
