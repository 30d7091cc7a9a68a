"""scripts/docker-entrypoint.sh starts the real LiteLLM proxy; empty optional variables mean "unset".

Compose passes `DATABASE_URL=` for "no database": LiteLLM 1.110 itself refuses to start on
that ("DATABASE_URL uses unsupported scheme '<missing scheme>'"), and on an empty REDIS_URL
(router_settings.redis_url), so the entrypoint unsets them; an empty UI_PASSWORD must not
become a valid password either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from carrot_hooks.serve import build_env
from tests.proxy_process import wait_ready
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-" + "ab" * 24


def launch(cmd: list[str], port: int, log: Path, extra: dict[str, str]) -> subprocess.Popen:
    dead = f"http://127.0.0.1:{free_port()}"  # no model is called in these tests
    env = build_env({
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root"),
        "HOST": "127.0.0.1", "PORT": str(port), "LITELLM_MODE": "PRODUCTION",
        "LITELLM_MASTER_KEY": MASTER_KEY, "OLLAMA_URL": dead, "VLLM_URL": f"{dead}/v1",
        "ALT_API_BASE": f"{dead}/v1", **extra,
    })
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def entrypoint_proxy(tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("entrypoint") / "proxy.log"
    proc = launch(
        ["sh", str(ROOT / "scripts/docker-entrypoint.sh")], port, log,
        {"DATABASE_URL": "", "REDIS_URL": "", "UI_PASSWORD": "", "LITELLM_SALT_KEY": "",
         "LITELLM_CONFIG": str(ROOT / "litellm_config.yaml")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log, timeout=120)
        yield url
    finally:
        stop(proc)


def test_empty_database_url_starts_master_key_only(entrypoint_proxy):
    ready = httpx.get(f"{entrypoint_proxy}/health/readiness", timeout=10).json()
    assert ready["status"] == "healthy" and ready["db"] == "Not connected"
    models = httpx.get(f"{entrypoint_proxy}/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert models.status_code == 200 and any(m["id"] == "ds-coder-6.7b" for m in models.json()["data"])
    assert httpx.get(f"{entrypoint_proxy}/v1/models", timeout=10).status_code == 401


def test_empty_ui_password_is_not_a_password(entrypoint_proxy):
    r = httpx.post(f"{entrypoint_proxy}/login", data={"username": "admin", "password": ""}, timeout=10)
    assert r.status_code == 401


def test_make_run_drops_empty_optional_urls():
    env = build_env({"REDIS_URL": "", "DATABASE_URL": "", "OLLAMA_URL": "http://o:1"})
    assert "REDIS_URL" not in env and "DATABASE_URL" not in env
    assert build_env({"REDIS_URL": "redis://r:6379/0"})["REDIS_URL"] == "redis://r:6379/0"
