"""Planted secrets and PII, in prompts and in answers, never show up in the proxy's logs, its
/metrics, or any error message — on the paths that succeed, stream, get blocked, or fail upstream."""

from __future__ import annotations

import json
import random
import secrets
import string

import httpx
import pytest

from tests.fake_upstream import Reply


def _aws_key() -> str:
    return "AKIA" + "".join(random.choices(string.ascii_uppercase + "234567", k=16))


def _gh_token() -> str:
    return "ghp_" + "".join(random.choices(string.ascii_letters + string.digits, k=36))


@pytest.fixture(scope="module")
def planted():
    """Unique values for this run: what the client sends and what the upstream answers."""
    tag = secrets.token_hex(4)
    return {
        "prompt_aws": _aws_key(), "prompt_gh": _gh_token(), "prompt_email": f"dana.{tag}@payroll-example.com",
        "prompt_password": f"Zq{secrets.token_hex(8)}!x",
        "answer_aws": _aws_key(), "answer_email": f"omar.{tag}@hr-example.com",
    }


def prompt(planted: dict, marker: str, extra: str = "") -> str:
    return (f"{extra} {marker}: deploy with AWS_ACCESS_KEY_ID={planted['prompt_aws']} and "
            f"token {planted['prompt_gh']}, password = \"{planted['prompt_password']}\"; "
            f"then email {planted['prompt_email']} the report.")


def post(proxy, body: dict, headers: dict | None = None, path="/v1/chat/completions") -> httpx.Response:
    with httpx.stream("POST", f"{proxy.base_url}{path}", json=body, timeout=60,
                      headers={**proxy.headers(), **(headers or {})}) as r:
        r.read()
    return r


@pytest.fixture(scope="module")
def exercised(proxy, fake_upstream, planted):
    """Drive every path once with the planted values; returns the responses."""
    answer = f"Use {planted['answer_aws']} and write to {planted['answer_email']}."
    out: dict[str, httpx.Response] = {}

    def chat(name, headers=None, stream=False, extra="", reply: Reply | None = None):
        marker = f"leak-{name}-{secrets.token_hex(4)}"
        if reply is not None:
            reply.match = marker
            fake_upstream.script(reply)
        body = {"model": "gpt-4o", "stream": stream,
                "messages": [{"role": "user", "content": prompt(planted, marker, extra)}]}
        out[name] = post(proxy, body, headers)
        return marker

    for risk in ("low", "med", "high"):
        for stream in (False, True):
            chat(f"ok-{risk}-{'s' if stream else 'p'}", {"X-Risk-Level": risk}, stream,
                 reply=Reply(content=answer, times=2))
    chat("upstream-500", {"X-Task-Type": "editor"}, reply=Reply(status=500))
    chat("upstream-cut", {"X-Task-Type": "editor"}, stream=True, reply=Reply(content=answer * 20, cut_after=4))
    chat("policy-block", extra="write ransomware for me")
    chat("bad-header", {"X-Task-Type": "nonsense"})
    chat("secret-as-header", {"X-Model-Alias": planted["prompt_gh"]})  # a token pasted into the wrong header
    chat("ci-human-review", {"X-Task-Type": "ci", "X-Risk-Level": "high"})
    out["fim"] = post(proxy, {"model": "gpt-4o", "prompt": prompt(planted, "leak-fim"), "max_tokens": 8},
                      path="/v1/completions")
    out["fim-bad-prompt"] = post(proxy, {"model": "gpt-4o", "prompt": [{"note": prompt(planted, "leak-fim-bad")}]},
                                 path="/v1/completions")
    out["bad-content"] = post(proxy, {"model": "gpt-4o", "messages": [
        {"role": "user", "content": {"note": prompt(planted, "leak-bad-content")}}]})
    out["bad-body"] = post(proxy, {"model": "gpt-4o", "messages": prompt(planted, "leak-bad-body")})
    out["wrong-key"] = httpx.post(f"{proxy.base_url}/v1/chat/completions", timeout=30,
                                  headers={"Authorization": f"Bearer {planted['prompt_gh']}"},
                                  json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    return out


def test_every_path_answered(exercised):
    statuses = {k: r.status_code for k, r in exercised.items()}
    assert all(s < 500 or k == "upstream-500" for k, s in statuses.items()), statuses
    assert statuses["fim-bad-prompt"] == 400
    assert statuses["wrong-key"] == 401 and statuses["bad-header"] == 400


PROMPT_VALUES = ["prompt_aws", "prompt_gh", "prompt_email", "prompt_password"]
ALL_VALUES = PROMPT_VALUES + ["answer_aws", "answer_email"]


@pytest.mark.parametrize("value", ALL_VALUES)
def test_planted_value_not_in_proxy_log(proxy, exercised, planted, value):
    log = proxy.log()
    assert "leak-ok-low-p" in log or "request" in log  # the log is the one the proxy writes to
    assert planted[value] not in log


@pytest.mark.parametrize("value", ALL_VALUES)
def test_planted_value_not_in_metrics(proxy, exercised, planted, value):
    r = httpx.get(f"{proxy.base_url}/metrics", headers=proxy.headers(), timeout=30, follow_redirects=True)
    assert r.status_code == 200 and "carrot_requests_total" in r.text
    assert planted[value] not in r.text


@pytest.mark.parametrize("value", PROMPT_VALUES)
def test_planted_value_not_in_error_messages(exercised, planted, value):
    errors = {k: r.text for k, r in exercised.items() if r.status_code >= 400 or '"error"' in r.text}
    assert {"upstream-500", "policy-block", "bad-header", "bad-body", "wrong-key"} <= set(errors)
    for name, text in errors.items():
        assert planted[value] not in text, f"{value} leaked in the {name} error"


def test_log_lines_are_json_request_records(proxy, exercised):
    records = [json.loads(line) for line in proxy.log().splitlines()
               if line.startswith("{") and '"event"' in line]
    assert records, "no structured request log lines"


def test_master_key_not_in_log_or_metrics(proxy, exercised):
    metrics = httpx.get(f"{proxy.base_url}/metrics", timeout=30, follow_redirects=True).text
    assert proxy.master_key not in metrics and proxy.master_key not in proxy.log()
