"""The compose scrape config and every Grafana panel query, run by a real Prometheus on the real proxy.

Prometheus and promtool come from Debian's `prometheus` package (scripts/setup_ops.sh).
The scrape config is deploy/prometheus/prometheus.yml itself, with the compose target
`proxy:4000` pointed at a test proxy of its own (with a vector store, so retrieval runs) and a 1 s interval.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests import services
from tests.conftest import make_client
from tests.fake_upstream import Reply
from tests.services import STATE_DIR, ServiceError, free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/carrot.json").read_text())
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m", "$task_type": ".*"}


def binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ServiceError(f"{name} not found: run scripts/setup_ops.sh (Debian package `prometheus`)")
    return found


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def test_promtool_accepts_the_compose_scrape_config():
    out = subprocess.run([binary("promtool"), "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def metrics_proxy(start_proxy, redis_url):
    """A proxy only this module's traffic reaches (no idle series from other tests), with a vector store and a
    canary at share 0 on ds-coder-v2 (the rollout panels have series; every request still goes to ds-coder-v2)."""
    proxy = start_proxy(env={"REDIS_URL": redis_url, "PGVECTOR_URL": services.pgvector_url()})
    routing = proxy.policy_dir / "routing.yaml"
    policy = yaml.safe_load(routing.read_text())
    policy["canaries"] = {"ds-coder-v2": {"stable": "ds-coder-v2", "candidate": "ds-coder-v2@2025-11-30",
                                          "share": "0%", "started": uuid.uuid4().hex}}
    routing.write_text(yaml.safe_dump(policy, sort_keys=False))
    yield proxy
    proxy.stop()  # each proxy holds about 1 GB: the suite's memory peak is the proxies alive at once


@pytest.fixture(scope="module")
def prometheus(metrics_proxy):
    """A Prometheus on loopback scraping the module's proxy with the compose scrape config and its rules."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "carrot-gateway")
    job["static_configs"][0]["targets"] = [metrics_proxy.base_url.removeprefix("http://")]
    work = STATE_DIR / "prometheus" / uuid.uuid4().hex[:8]
    work.mkdir(parents=True)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copytree(ROOT / "deploy/prometheus/rules", work / "rules")  # rule_files is relative to the config
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary("prometheus"), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready in 30 s"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def query(url: str, expr: str) -> list[dict]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def finite(result: list[dict]) -> list[dict]:
    """The series with a number: a quantile or ratio over no observations is NaN, which Grafana shows as no data."""
    return [r for r in result if r["value"][1] not in ("NaN", "+Inf", "-Inf")]


def wait_until(url: str, expr: str, ok, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(url, expr)
        if ok(result):
            return result
        assert time.monotonic() < deadline, f"{expr} never satisfied: {result}"
        time.sleep(0.5)


def total_requests(url: str) -> float:
    result = query(url, "sum(carrot_requests_total)")
    return float(result[0]["value"][1]) if result else 0.0


def traffic(client, fake_upstream, marker: str) -> int:
    """Fresh requests to both model sizes (plain and streamed), a cache hit, a retrieval and an upstream error.

    Returns how many requests the gateway should have counted.
    """
    for task in ("editor", "chat"):
        for stream in (False, True):
            reply = client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": f"{task} {marker} {uuid.uuid4()}"}],
                extra_headers={"X-Task-Type": task}, stream=stream,
            )
            if stream:
                list(reply)
    repeated = [{"role": "user", "content": f"same question {marker} {uuid.uuid4()}"}]
    for _ in range(2):  # the second is served from the result cache
        client.chat.completions.create(model="auto", messages=repeated, extra_headers={"X-Task-Type": "editor"})
    client.chat.completions.create(  # retrieval runs (an unindexed repo: no hits), so the RAG panel has data
        model="auto", messages=[{"role": "user", "content": f"how is the delay computed? {marker} {uuid.uuid4()}"}],
        extra_headers={"X-Task-Type": "rag-code", "X-Context-Refs": f"no-such-repo-{marker}"})
    failing = f"failing {marker} {uuid.uuid4()}"
    fake_upstream.script(Reply(status=500, match=failing))
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": failing}],
                                       extra_headers={"X-Task-Type": "editor"})
    return 8


def test_every_dashboard_query_returns_data_from_the_scraped_proxy(prometheus, metrics_proxy, fake_upstream, marker):
    client = make_client(metrics_proxy)
    # scraped without a key: the proxy's /metrics must not require auth
    wait_until(prometheus, 'up{job="carrot-gateway"}', lambda r: r and r[0]["value"][1] == "1")
    # two rounds with a scrape between, so every series exists before it grows and rate() > 0
    for _ in range(2):
        before = total_requests(prometheus)
        sent = traffic(client, fake_upstream, marker)
        expected = before + sent
        wait_until(prometheus, "sum(carrot_requests_total)",
                   lambda r, expected=expected: r and float(r[0]["value"][1]) >= expected)

    empty = [title for title, expr in panel_queries() if not finite(query(prometheus, expr))]
    assert not empty, f"panels without data (no series, or only NaN) after traffic: {empty}"

    def value(title_prefix: str) -> float:
        return float(finite(query(prometheus, panel_query(title_prefix)))[0]["value"][1])

    assert value("Requests / s") > 0
    assert 0 < value("Error ratio") < 1  # the scripted upstream 500
    assert 0 < value("Cache hit rate") < 1  # the repeated request
    for title, _ in panel_queries():
        if title.startswith("Within SLO"):
            assert 0 < value(title) <= 1, title  # the fake answers in milliseconds
    p95 = {r["metric"]["model"] for r in finite(query(prometheus, panel_query("P95 latency, every model")))}
    assert {"ds-coder-6.7b", "ds-coder-v2"} <= p95
    tokens = {r["metric"]["direction"] for r in query(prometheus, panel_query("Tokens / s")) if float(r["value"][1]) > 0}
    assert tokens == {"input", "output"}
    stages = {r["metric"]["stage"] for r in finite(query(prometheus, panel_query("Gateway hook overhead")))}
    assert {"route", "prompt_pack", "context"} <= stages
    assert value("RAG retrieval duration") > 0
    states = {(r["metric"]["alias"], r["metric"]["arm"]): float(r["value"][1])
              for r in query(prometheus, panel_query("Canary traffic share"))}
    assert states == {("ds-coder-v2", "stable"): 1.0, ("ds-coder-v2", "candidate"): 0.0}
    # the alerting and recording rules loaded and evaluate on the scraped series
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {g["name"] for g in groups} == {"carrot-recording", "carrot-slo", "carrot-safety"}
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    recorded = wait_until(prometheus, "model:carrot_request_duration_seconds:p95_5m", lambda r: finite(r))
    assert {"ds-coder-6.7b", "ds-coder-v2"} <= {r["metric"]["model"] for r in finite(recorded)}


def panel_query(title_prefix: str) -> str:
    """The first query of the one panel whose title starts with `title_prefix`."""
    (expr,) = [e for t, e in panel_queries() if t.startswith(title_prefix) and t.endswith("[A]")]
    return expr
