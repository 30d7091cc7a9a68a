#!/bin/sh
# Test prerequisites pip cannot install: Prometheus + promtool (Debian package) for
# tests/test_deploy_prometheus.py, which runs the compose scrape config and every Grafana
# dashboard query against a real Prometheus scraping the real proxy. Idempotent; installing
# needs root and apt-get (Debian/Ubuntu); elsewhere it says what to install.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
how="install Prometheus 2.x so that \`prometheus\` and \`promtool\` are on PATH (macOS: brew install prometheus;
  other systems: the release archive from prometheus.io), then run make test again"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make test: prometheus/promtool not found and there is no apt-get to install them: $how" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "make test: prometheus/promtool not found; installing them needs root:" \
         "sudo apt-get install prometheus (or $how)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# the package's service is not started (no init system in CI); the tests start their own
apt-get install -y -qq --no-install-recommends prometheus
