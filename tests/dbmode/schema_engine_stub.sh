#!/bin/sh
# TEST INFRASTRUCTURE ONLY: stands in for Prisma's native schema engine, which the Prisma CLI
# looks for before `prisma generate`. Only `--version` is answered; the tests create LiteLLM's
# schema with push_schema.mjs and start LiteLLM with DISABLE_SCHEMA_UPDATE=true.
if [ "${1:-}" = "--version" ]; then
    echo "schema-engine-cli 393aa359c9ad4a4bb28630fb5613f9c281cde053"
    exit 0
fi
echo "schema_engine_stub.sh: only --version is supported (test infrastructure)" >&2
exit 1
