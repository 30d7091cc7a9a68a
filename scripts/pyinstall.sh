#!/usr/bin/env bash
# Sourced by the setup scripts: `pyinstall VENV ARGS...` installs ARGS into VENV with uv (pinned,
# itself installed into VENV by pip on first use): parallel downloads and a shared wheel cache make
# a warm install seconds instead of pip's minutes. CARROT_INSTALLER=pip uses pip instead (e.g. a
# mirror configured for pip only); uv reads UV_INDEX_URL / UV_EXTRA_INDEX_URL for its own mirror.
UV_VERSION=0.13.9

pyinstall() {
    local venv=$1
    shift
    if [ "${CARROT_INSTALLER:-uv}" = pip ]; then
        "$venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check "$@"
        return
    fi
    if ! "$venv/bin/uv" --version 2>/dev/null | grep -q "^uv $UV_VERSION\( \|$\)"; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" || {
            echo "pyinstall: could not install uv $UV_VERSION with pip; CARROT_INSTALLER=pip installs with pip" >&2
            return 1
        }
    fi
    "$venv/bin/uv" pip install -q --python "$venv/bin/python" "$@"
}
