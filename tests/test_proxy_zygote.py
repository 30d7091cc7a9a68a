"""The test proxies' zygote (`tests/proxy_zygote.py`): it forks only where a child is the same as a fresh
`litellm` process, and a child behaves as the proxy it stands for."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx

from carrot_hooks.serve import build_env
from tests.proxy_process import ROOT, ProxyProcess
from tests.proxy_zygote import Zygote, ZygoteChild

ZYGOTE_ON = os.environ.get("CARROT_TEST_ZYGOTE", "1") != "0"


def zygote() -> Zygote:
    """This test process's zygote (made here when CARROT_TEST_ZYGOTE=0 kept the suite from making one)."""
    return Zygote.instance or Zygote(build_env(dict(os.environ)), ROOT)


def test_litellm_reads_the_environment_only_where_audited():
    """Fails when a LiteLLM (or uvicorn, spaCy, Presidio) upgrade reads the whole environment at import in a
    place `WHOLE_ENV_READERS` has not audited: every proxy would start without the zygote (correct, slow)."""
    z = zygote()
    assert z.unusable == ""
    assert {"LITELLM_LOG", "LITELLM_LOCAL_MODEL_COST_MAP", "PYTHON_GC_THRESHOLD"} <= z.reads  # read at import


def test_a_start_differing_where_imports_read_runs_without_the_zygote():
    z = zygote()
    per_proxy = {"CARROT_POLICY_DIR": "/elsewhere/policy", "REDIS_URL": "redis://127.0.0.1:1/0",
                 "OLLAMA_URL": "http://127.0.0.1:9"}
    assert z.differs_where_read({**z.env, **per_proxy}) == []
    assert z.differs_where_read({**z.env, **per_proxy, "LITELLM_LOG": "DEBUG"}) == ["LITELLM_LOG"]
    assert z.differs_where_read({**z.env, "PYTHONPATH": "/x"}) == ["PYTHONPATH"]  # read by the interpreter's start
    assert z.differs_where_read({**z.env, "https_proxy": "http://127.0.0.1:3128"}) == ["https_proxy"]  # httpx clients
    without = dict(z.env)
    del without["LITELLM_LOCAL_MODEL_COST_MAP"]
    assert z.differs_where_read(without) == ["LITELLM_LOCAL_MODEL_COST_MAP"]


def test_a_forked_proxy_serves_logs_and_stops_as_a_process_of_its_own(proxy: ProxyProcess):
    assert isinstance(proxy.proc, ZygoteChild if ZYGOTE_ON else subprocess.Popen)
    r = httpx.post(f"{proxy.base_url}/v1/chat/completions", headers={**proxy.headers(), "X-Task-Type": "tests"},
                   json={"model": "carrot-chat", "messages": [{"role": "user", "content": "zygote check"}]}, timeout=60)
    assert r.status_code == 200 and r.headers["x-carrot-prompt-pack"].startswith("explain_tests@")
    assert os.getpgid(proxy.proc.pid) == proxy.proc.pid  # its own session: stop() signals its whole group
    assert os.readlink(f"/proc/{proxy.proc.pid}/cwd") == str(ROOT)
    proxy.wait_log('"prompt_pack": "explain_tests@')


def test_a_forked_child_reports_its_exit_as_popen_does(fake_upstream):
    p = ProxyProcess(fake_upstream.url)
    p.stop()
    assert p.proc.returncode == -signal.SIGTERM and p.proc.poll() == -signal.SIGTERM
