"""No outbound network at run time other than the configured upstreams and services.

The proxy runs with an audit hook (tests/reliability_support.py) that records every socket
connect and DNS lookup of the proxy process and fails any that leaves loopback. After traffic on
every path (all task types, FIM, streaming, high risk to the alternative model, PII, RAG, cache)
the record must hold only the fake upstream, the proxy's Redis and its vector store."""

from __future__ import annotations

import httpx
import pytest

TASKS = ["editor", "refactor", "tests", "chat", "rag-code", "rag-doc", "ci"]


@pytest.fixture(scope="module")
def traffic(chaos, fake_upstream):
    """One request down every path; returns the statuses."""
    statuses = {}
    h = chaos.headers()
    for task in TASKS:
        for stream in (False, True):
            body = {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": (
                f"egress check {task}: mail jane.roe@example.org, see https://example.com/docs and "
                f"call +1 212 555 0100 ({task})")}]}
            with httpx.stream("POST", f"{chaos.base_url}/v1/chat/completions", json=body, timeout=60,
                              headers={**h, "X-Task-Type": task,
                                       **({"X-Context-Refs": "some-repo@abc123,src/a.py"} if task == "rag-code" else {})}) as r:
                r.read()
            statuses[(task, stream)] = r.status_code
    for risk in ("med", "high"):
        r = httpx.post(f"{chaos.base_url}/v1/chat/completions", timeout=60, headers={**h, "X-Risk-Level": risk},
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "egress via alt model"}]})
        statuses[("risk", risk)] = r.status_code
    r = httpx.post(f"{chaos.base_url}/v1/completions", timeout=60, headers=h,
                   json={"model": "gpt-4o", "prompt": "def egress(", "suffix": ")\n"})
    statuses[("fim", False)] = r.status_code
    for path in ("/v1/models", "/metrics", "/health/liveliness"):
        statuses[(path, False)] = httpx.get(f"{chaos.base_url}{path}", headers=h, timeout=30,
                                            follow_redirects=True).status_code
    return statuses


def test_traffic_was_served(traffic):
    assert all(s == 200 for s in traffic.values()), traffic


def test_recorder_is_live(chaos, traffic, fake_upstream):
    connects = {(e["host"], e["port"]) for e in chaos.egress() if e["event"] == "socket.connect"}
    assert ("127.0.0.1", str(fake_upstream.port)) in connects  # the hook sees the proxy's own upstream calls


def test_no_connection_leaves_loopback(chaos, traffic):
    blocked = [e for e in chaos.egress() if not e["allowed"]]
    assert blocked == [], blocked[:10]


def test_connections_only_to_configured_services(chaos, traffic):
    records = [e for e in chaos.egress() if e["event"] == "socket.connect" and e["host"] != "unix"]
    stray = {(e["host"], e["port"]): [f for f in e["stack"] if "/litellm/" in f or "carrot" in f][-3:]
             for e in records if (e["host"], e["port"]) not in chaos.allowed}
    assert not stray, f"connections to unconfigured addresses (address: innermost project/LiteLLM frames): {stray}"


def test_dns_lookups_only_for_loopback(chaos, traffic):
    hosts = {e["host"] for e in chaos.egress() if e["event"] == "socket.getaddrinfo"}
    assert hosts <= {"127.0.0.1", "localhost", "::1", "None", ""}, hosts
