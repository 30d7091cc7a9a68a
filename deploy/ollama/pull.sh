#!/bin/sh
# The ollama-pull job: pull OLLAMA_MODELS_TO_PULL, then create each FIM tag of OLLAMA_FIM_MODELS
# (`name=base`) from its base model with deepseek-coder-fim.gotmpl as TEMPLATE. Ollama's /v1/completions
# refuses `suffix` ("does not support insert") for a model whose template has no .Suffix, which is the
# case for the library's deepseek-coder (v1) tags; deepseek-coder-v2's template has it.
set -eu
here=$(dirname "$0")
for m in $OLLAMA_MODELS_TO_PULL; do
    ollama pull "$m"
done
for pair in ${OLLAMA_FIM_MODELS:-}; do
    name=${pair%%=*}
    base=${pair#*=}
    file=$(mktemp)
    {
        echo "FROM $base"
        printf 'TEMPLATE """%s"""\n' "$(cat "$here/deepseek-coder-fim.gotmpl")"
        for stop in '<｜fim▁begin｜>' '<｜fim▁hole｜>' '<｜fim▁end｜>' '<｜end▁of▁sentence｜>'; do
            printf 'PARAMETER stop "%s"\n' "$stop"
        done
    } >"$file"
    ollama create "$name" -f "$file"
    rm -f "$file"
done
