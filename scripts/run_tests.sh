#!/usr/bin/env bash
# `make test`: the fast suite, then each slow group (its own setup first), each group timed.
# Usage: scripts/run_tests.sh [group ...]; a group G runs `scripts/setup_G.sh` (when present)
# and then the tests marked G. Exits non-zero when any group failed; a group that collects no
# test fails too (a slow group must never pass by running nothing).
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
groups=("$@")
status=0
summary=()
fast_expr="not clients and not real_model and not dbmode and not browser"

run() {
    local name=$1; shift
    local start=$SECONDS
    "$@"
    local rc=$?
    summary+=("$name: exit $rc in $((SECONDS - start)) s")
    [ "$rc" -eq 0 ] || status=1
}

# The fast suite on CARROT_TEST_WORKERS pytest-xdist workers (default 2), one test file per worker at a
# time (module fixtures start once); each worker starts its own session proxies. 0 or 1 = no xdist.
workers=${CARROT_TEST_WORKERS:-2}
case $workers in
    '' | *[!0-9]*) echo "CARROT_TEST_WORKERS=$workers: expected a whole number of test workers (1 = no xdist)" >&2; exit 2 ;;
esac
xdist=()
[ "$workers" -le 1 ] || xdist=(-n "$workers" --dist loadfile)
run fast "$PY" -m pytest -m "$fast_expr" ${xdist[@]+"${xdist[@]}"}  # (bash < 4.4: an empty array is unset)
for g in "${groups[@]}"; do
    if [ -f "scripts/setup_$g.sh" ]; then
        run "setup $g" bash "scripts/setup_$g.sh"
    fi
    run "$g" "$PY" -m pytest -m "$g"
done
printf '\n== test groups ==\n'
printf '%s\n' "${summary[@]}"
exit "$status"
