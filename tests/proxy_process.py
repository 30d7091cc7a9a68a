"""Start the real LiteLLM proxy (`litellm --config ...`) as a subprocess on a free port (forked from the test
zygote where that is the same: `tests/proxy_zygote.py`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from carrot_hooks.config import file_version
from carrot_hooks.serve import ROOT, build_env, command
from tests.proxy_zygote import ZygoteChild, spawn
from tests.services import free_port, wait_for

MASTER_KEY = "sk-test-" + "c0ffee" * 8
# The environment the test process started with: what its own imports set later (LiteLLM's TIKTOKEN_CACHE_DIR,
# the embedded Postgres' XDG_RUNTIME_DIR) and the test being run (PYTEST_CURRENT_TEST) are no proxy's business
STARTED_ENV = dict(os.environ)


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid`, zombies included until reaped: children of each of its threads (the gateway's
    search threads start its search processes, the main thread uvicorn's workers)."""
    kids = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process ended
        return []
    for task in tasks:
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            pass
    return kids + [g for k in kids for g in descendants(k)]


def wait_ready(proc: subprocess.Popen | ZygoteChild, base_url: str, log_path: Path, timeout: float) -> None:
    """Return once `/health/liveliness` answers 200; RuntimeError with the log tail if the proxy dies or is late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"{base_url}/health/liveliness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"proxy not ready after {timeout}s:\n{log_path.read_text(errors='replace')[-4000:]}")


class ProxyProcess:
    """A running proxy with its own copy of policy/ (tests may edit it) and a log file."""

    def __init__(self, upstream_url: str, env: dict[str, str] | None = None, config: Path | None = None,
                 startup_timeout: float = 360.0, workers: int = 1, wait: bool = True, root: Path = ROOT,
                 fork: bool = True):
        """`root`: the checkout whose `policy/` is copied, whose `litellm_config.yaml` is the default config
        and which the proxy runs in (LiteLLM loads the config's callbacks by path from its directory).
        `fork`: from the test zygote where that is the same as a fresh start (`tests/proxy_zygote.py`)."""
        self.workdir = Path(tempfile.mkdtemp(prefix="carrot-proxy-"))
        self.policy_dir = self.workdir / "policy"
        shutil.copytree(root / "policy", self.policy_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.master_key = MASTER_KEY
        self.log_path = self.workdir / "proxy.log"
        base = {k: v for k, v in STARTED_ENV.items() if not k.startswith(("OPENAI_", "LITELLM_", "DATABASE_URL"))}
        common = {
            **base,
            "ALT_API_KEY": "sk-fake-alt", "ANTHROPIC_API_KEY": "sk-ant-fake", "LITELLM_MASTER_KEY": self.master_key,
            "LITELLM_MODE": "PRODUCTION",  # the CLI would otherwise load the developer's .env
            "CARROT_RAG_WARM": "0",  # most test proxies never retrieve; the first rag request loads the model
        }
        self.env = build_env({
            **common,
            "OLLAMA_URL": upstream_url, "VLLM_URL": f"{upstream_url}/v1", "ALT_API_BASE": f"{upstream_url}/v1",
            "CARROT_POLICY_DIR": str(self.policy_dir),
            **(env or {}),
        })
        self.log_path.touch()
        argv = command(self.port, config=config or root / "litellm_config.yaml", workers=workers)
        # uvicorn's worker processes (`workers` > 1) start afresh anyway; another checkout has its own imports
        self.proc = spawn(argv, self.env, root, self.log_path, build_env(common), fork=fork and root == ROOT and workers == 1)
        self.startup_timeout = startup_timeout
        if wait:
            self.wait_started()

    def wait_started(self) -> None:
        """Return once the proxy answers (`wait=False` starts several side by side: one start's wait, not n)."""
        try:
            wait_ready(self.proc, self.base_url, self.log_path, self.startup_timeout)
        except RuntimeError:
            self.stop()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_policy(self, name: str, timeout: float = 60.0) -> None:
        """Wait until requests are served with the current contents of `policy/<name>.yaml`
        (the `x-carrot-policy` header names the version in force; each probe request makes the
        proxy look at the file)."""
        want = f"{name}@{file_version(self.policy_dir / f'{name}.yaml')}"
        probe = {"model": "carrot-chat", "messages": [{"role": "user", "content": "policy probe"}]}

        def served() -> bool:
            r = httpx.post(f"{self.base_url}/v1/chat/completions", json=probe, headers=self.headers(), timeout=60)
            return want in r.headers.get("x-carrot-policy", "")

        if not wait_for(served, timeout, every=0.3):
            raise AssertionError(f"the proxy never served with {want}:\n{self.log()[-2000:]}")

    def wait_log(self, text: str, after: int = 0, timeout: float = 60.0, probe: Callable[[], object] | None = None) -> None:
        """Wait until `text` appears in the log past character `after` (e.g. `len(proxy.log())` taken before);
        `probe()` runs before each look (a policy file is re-read only when a request needs it)."""
        def seen() -> bool:
            if probe:
                probe()
            return text in self.log()[after:]

        if not wait_for(seen, timeout, every=0.2):
            raise AssertionError(f"{text!r} never appeared in the proxy log:\n{self.log()[-2000:]}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
