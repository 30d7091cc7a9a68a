"""`make run`'s environment, and an unreachable upstream: one log line per outage and a counter, no tracebacks."""

from __future__ import annotations

import re

import httpx

from carrot_hooks.outages import Outages, unreachable_upstreams
from carrot_hooks.serve import QUIET, _environment, build_env
from tests.conftest import DEAD
from tests.services import wait_for


def test_ollama_v1_url_follows_ollama_url_unless_set():
    assert build_env({"OLLAMA_URL": "http://gpu-box:11434/"})["OLLAMA_V1_URL"] == "http://gpu-box:11434/v1"
    assert build_env({"OLLAMA_URL": "http://gpu-box:11434", "OLLAMA_V1_URL": ""})["OLLAMA_V1_URL"] == \
        "http://gpu-box:11434/v1"  # `OLLAMA_V1_URL=` in .env is unset too
    assert build_env({"OLLAMA_URL": "http://a:1", "OLLAMA_V1_URL": "http://b:2/v1"})["OLLAMA_V1_URL"] == "http://b:2/v1"


def test_quiet_by_default_and_log_level_brings_litellm_output_back(monkeypatch):
    for var in ("CARROT_LOG_LEVEL", "LITELLM_LOG", "LITELLM_SUPPRESS_STARTUP_OUTPUT"):
        monkeypatch.delenv(var, raising=False)
    env, _ = _environment(verbose=False)
    assert {k: env[k] for k in QUIET} == QUIET
    monkeypatch.setenv("CARROT_LOG_LEVEL", "debug")
    env, _ = _environment(verbose=False)
    assert env["LITELLM_LOG"] == "DEBUG" and "LITELLM_SUPPRESS_STARTUP_OUTPUT" not in env
    monkeypatch.delenv("CARROT_LOG_LEVEL")
    env, _ = _environment(verbose=True)
    assert env["CARROT_LOG_LEVEL"] == "warning" == env["LITELLM_LOG"].lower()
    assert "LITELLM_DONT_SHOW_FEEDBACK_BOX" not in env


def test_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    outages = Outages()
    refused = ConnectionRefusedError("Cannot connect to host 10.0.0.9:11434 ssl:default [Connect call failed]")
    with caplog.at_level("WARNING", logger="carrot.upstream"):
        for _ in range(3):
            for upstream in unreachable_upstreams(refused, "http://10.0.0.9:11434/api/chat"):
                outages.failed(upstream, refused)
        outages.answered("10.0.0.9:11434")
        outages.answered("10.0.0.9:11434")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("upstream 10.0.0.9:11434 is unreachable")
    assert lines[1] == "upstream 10.0.0.9:11434 answers again (3 request(s) failed while it was unreachable)"
    assert unreachable_upstreams(TimeoutError("Request timed out")) == []


def test_unreachable_upstream_is_one_line_and_a_counter_not_a_traceback_per_request(unreachable_proxies):
    dead, proxy = DEAD.removeprefix("http://"), unreachable_proxies["ollama-vllm"]
    for _ in range(3):
        r = httpx.post(f"{proxy.base_url}/v1/chat/completions", headers=proxy.headers(), timeout=120,
                       json={"model": "ds-coder-v2", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 502 and f"http://{dead}" in r.json()["error"]["message"]

    def counted() -> str:
        text = httpx.get(f"{proxy.base_url}/metrics/", timeout=30, follow_redirects=True).text
        m = re.search(rf'carrot_upstream_unreachable_total{{upstream="{re.escape(dead)}"}} (\S+)', text)
        return m.group(1) if m else ""

    assert wait_for(lambda: counted() == "3.0", timeout=60), counted()
    log = proxy.log()
    assert len(re.findall(rf"upstream {re.escape(dead)} is unreachable", log)) == 1, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
