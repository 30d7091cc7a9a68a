#!/bin/sh
# Test prerequisites pip cannot install: Prometheus + promtool (Debian package) for
# tests/test_deploy_prometheus.py, which runs the compose scrape config and every Grafana
# dashboard query against a real Prometheus scraping the real proxy. Idempotent; needs root.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# the package's service is not started (no init system in CI); the tests start their own
apt-get install -y -qq --no-install-recommends prometheus
