"""The test proxies' zygote (`tests/proxy_zygote.py`): it forks only where a child is the same as a fresh
`litellm` process, and a forked proxy serves, logs and stops as a fresh one does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import proxy_zygote
from tests.proxy_process import ROOT, ProxyProcess
from tests.proxy_zygote import PER_PROXY, ZygoteChild


@pytest.fixture
def zygote_on(monkeypatch):
    """The zygote on for this test, whatever CARROT_TEST_ZYGOTE the run has."""
    monkeypatch.setenv("CARROT_TEST_ZYGOTE", "1")


@pytest.fixture(scope="module")
def forked(fake_upstream, redis_url) -> Iterator[ProxyProcess]:
    """One forked proxy for the module's tests, whatever CARROT_TEST_ZYGOTE the run has."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARROT_TEST_ZYGOTE", "1")
        p = ProxyProcess(fake_upstream.url, env={"REDIS_URL": redis_url})
    yield p
    p.stop()


@pytest.fixture
def zygote(forked) -> proxy_zygote.Zygote:
    return forked.proc.zygote


def test_the_imports_read_the_environment_only_where_audited_and_never_a_per_proxy_key(zygote):
    """Fails when a LiteLLM (or uvicorn, spaCy, Presidio) upgrade reads the whole environment at import in a place
    `WHOLE_ENV_READERS` has not audited, or reads a key a test proxy sets for itself: every proxy would then
    start without the zygote (correct, slow)."""
    assert zygote.unusable == ""
    assert {"LITELLM_LOG", "LITELLM_LOCAL_MODEL_COST_MAP", "PYTHON_GC_THRESHOLD"} <= zygote.reads  # read at import
    assert [k for k in zygote.reads if k.startswith(PER_PROXY)] == []


def test_only_a_start_differing_in_per_proxy_keys_is_forked(zygote):
    env = zygote.env
    per_proxy = {"CARROT_POLICY_DIR": "/elsewhere/policy", "REDIS_URL": "redis://127.0.0.1:1/0",
                 "OLLAMA_URL": "http://127.0.0.1:9", "PGVECTOR_URL": "postgresql://127.0.0.1:1/x"}
    assert zygote.fits({**env, **per_proxy}, ROOT) == []
    assert zygote.fits({**env, **per_proxy, "LITELLM_LOG": "DEBUG"}, ROOT) == ["LITELLM_LOG"]  # read at import
    assert zygote.fits({**env, "OPENBLAS_NUM_THREADS": "1"}, ROOT) == ["OPENBLAS_NUM_THREADS"]  # read by C code
    assert zygote.fits({**env, "PYTHONPATH": "/x"}, ROOT) == ["PYTHONPATH"]  # read by the interpreter's start
    assert zygote.fits({**env, "CARROT_OTEL_ENABLED": "1"}, ROOT) == ["CARROT_OTEL_ENABLED"]  # a whole-env reader's
    without = dict(env)
    del without["LITELLM_LOCAL_MODEL_COST_MAP"]
    assert zygote.fits(without, ROOT) == ["LITELLM_LOCAL_MODEL_COST_MAP"]
    assert zygote.fits(env, ROOT.parent) == [f"folder {ROOT.parent}"]


def test_an_error_answer_keeps_the_zygote_in_step(zygote, forked):
    with pytest.raises(RuntimeError, match="ChildProcessError"):
        zygote.ask({"op": "poll", "pid": os.getpid()})  # not its child
    assert zygote.ask({"op": "poll", "pid": forked.proc.pid}) == {"rc": None}  # in step, and still serving


def _startup(log: str) -> list[str]:
    """The log up to the first request, numbers masked, without LiteLLM's randomly chosen feedback line and
    errors that depend on timing (a Redis ping timing out on a loaded machine)."""
    head = log.split('{"event"', 1)[0]
    return [re.sub(r"\d+", "N", line) for line in head.splitlines()
            if not re.match(r"#\s+'.*'\s+#$", line) and ":ERROR:" not in line]


def test_a_forked_proxy_serves_and_logs_as_a_fresh_one(forked: ProxyProcess, fake_upstream, redis_url):
    fresh = ProxyProcess(fake_upstream.url, env={"REDIS_URL": redis_url}, fork=False)
    try:
        assert isinstance(forked.proc, ZygoteChild) and isinstance(fresh.proc, subprocess.Popen)
        answers = []
        for p in (forked, fresh):
            r = httpx.post(f"{p.base_url}/v1/chat/completions", timeout=60,
                           headers={**p.headers(), "X-Task-Type": "tests", "X-Risk-Level": "med"},
                           json={"model": "carrot-chat", "messages": [
                               {"role": "user", "content": f"zygote {uuid.uuid4().hex}: mail ana@example.com"}]})
            assert r.status_code == 200, r.text
            answers.append({k: v for k, v in r.headers.items() if k.startswith("x-carrot-")})
        assert answers[0] == answers[1] and answers[0]["x-carrot-prompt-pack"].startswith("explain_tests@")
        assert _startup(forked.log()) == _startup(fresh.log())
    finally:
        fresh.stop()


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_forked_proxy_stops_and_is_reaped_as_a_process_of_its_own(zygote_on, fake_upstream):
    p = ProxyProcess(fake_upstream.url)
    assert isinstance(p.proc, ZygoteChild) and os.getpgid(p.proc.pid) == p.proc.pid  # its own session: stop() signals its whole group
    p.stop()
    assert p.proc.returncode == -signal.SIGTERM  # the zygote's waitpid
    assert not os.path.exists(f"/proc/{p.proc.pid}")  # reaped, not left a zombie


def test_proxies_outlive_a_dead_zygote_and_the_next_start_makes_a_new_one(zygote_on, fake_upstream, monkeypatch):
    monkeypatch.setattr(proxy_zygote, "_zygote", None)  # private zygotes: the shared one's proxies stay its own
    p = ProxyProcess(fake_upstream.url)
    dead = proxy_zygote._zygote
    try:
        assert isinstance(p.proc, ZygoteChild)
        dead.proc.kill()
        dead.proc.wait()
        assert httpx.get(f"{p.base_url}/health/liveliness", timeout=10).status_code == 200
        p.stop()  # signals its group although nobody can report its exit status any more
        assert p.proc.returncode == -signal.SIGKILL and not _running(p.proc.pid)
        q = ProxyProcess(fake_upstream.url)
        q.stop()
        assert isinstance(q.proc, ZygoteChild) and proxy_zygote._zygote is not dead
    finally:
        dead.close()
        proxy_zygote.close()
