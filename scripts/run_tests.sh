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

cpu_file=$(mktemp)
trap 'rm -f "$cpu_file"' EXIT
cpu_total() {  # user+sys CPU seconds of every child process waited for so far -> $cpu (`times`, 2nd line)
    times > "$cpu_file"  # in this shell: a $(...) subshell would count its own children only
    cpu=$(awk 'NR == 2 { split($0, f, /[ms ]+/); print f[1] * 60 + f[2] + f[3] * 60 + f[4] }' "$cpu_file")
}

run() {  # servers a group daemonises (an embedded Postgres) are not waited for, so not counted
    local name=$1; shift
    local start=$SECONDS cpu before
    cpu_total; before=$cpu
    "$@"
    local rc=$?
    cpu_total
    summary+=("$name: exit $rc in $((SECONDS - start)) s, $(awk -v a="$before" -v b="$cpu" 'BEGIN { printf "%.0f", b - a }') CPU-s")
    [ "$rc" -eq 0 ] || status=1
}

# The fast suite on CARROT_TEST_WORKERS pytest-xdist workers (default 2), one test file per worker at a
# time (module fixtures start once); the files sharing a multi-proxy session fixture run on one worker
# (ONE_WORKER in tests/conftest.py). 0 or 1 = no xdist.
# Bytecode written even where the machine sets PYTHONDONTWRITEBYTECODE: else each worker rewrites every test
# module's assertions again at collection and each proxy compiles what setup did not (the tests' helpers)
export PYTHONDONTWRITEBYTECODE=
workers=${CARROT_TEST_WORKERS:-2}
case $workers in
    '' | *[!0-9]*) echo "CARROT_TEST_WORKERS=$workers: expected a whole number of test workers (1 = no xdist)" >&2; exit 2 ;;
esac
xdist=()
[ "$workers" -le 1 ] || xdist=(-n "$workers" --dist loadfile)
run fast "$PY" -m pytest -m "$fast_expr" --durations=15 ${xdist[@]+"${xdist[@]}"}  # (bash < 4.4: an empty array is unset)
for g in "${groups[@]}"; do
    if [ -f "scripts/setup_$g.sh" ]; then
        run "setup $g" bash "scripts/setup_$g.sh"
    fi
    run "$g" "$PY" -m pytest -m "$g"
done
printf '\n== test groups ==\n'
printf '%s\n' "${summary[@]}"
exit "$status"
