"""The README's quick start, run verbatim on a fresh clone: `make run`, then its curl and SDK examples.

The blocks are the fenced code blocks after the `<!-- quickstart:server ... -->` and
`<!-- quickstart:client -->` markers. The environment is what a user on this machine would have,
plus: the upstreams on the fake, a free PORT, and CARROT_VENV (the suite's own venv, so the clone
is not installed again; the clone's `.venv` links to it for the client block's `.venv/bin/python`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from rag_indexer.embedded import is_running
from tests.fake_upstream import Reply
from tests.services import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def readme_block(marker: str) -> str:
    """The fenced block right after `<!-- quickstart:MARKER ...-->` in README.md."""
    m = re.search(rf"<!-- quickstart:{marker}\b.*?-->\s*```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert m, f"README.md has no quickstart:{marker} block"
    return m.group(1)


def _other_connections(url: str) -> int:
    """Client connections to the store at `url` besides this one; -1 while it does not take connections
    (starting or shutting down: the wait goes on, or ends on the server's exit with its log)."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                "AND pid <> pg_backend_pid()").fetchone()[0]
    except psycopg.OperationalError:
        return -1


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/liveliness", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_readme_quick_start_runs_verbatim_on_a_fresh_clone(tmp_path, fake_upstream):
    clone = tmp_path / "carrot"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / ".venv").symlink_to(VENV)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_", "CARROT_", "PG", "REDIS"))}
    env.update({"PORT": str(port), "CARROT_VENV": str(VENV), "PYTHONPATH": str(clone),
                "OLLAMA_URL": fake_upstream.url, "VLLM_URL": f"{fake_upstream.url}/v1"})
    env.pop("DATABASE_URL", None)
    env.pop("PGVECTOR_URL", None)
    log_path = tmp_path / "make-run.log"
    fake_upstream.script(Reply(content="def test_add(): assert add(1, 2) == 3", match="pytest for add", times=1),
                         Reply(content="total = a + b", match="Rename x to total", times=1))
    with log_path.open("wb") as log:
        server = subprocess.Popen(["bash", "-c", readme_block("server")], cwd=clone, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _healthy(url) or server.poll() is not None, timeout=900, every=1), log_path.read_text()
        assert wait_for(lambda: "stop       Ctrl-C" in log_path.read_text(), timeout=60), log_path.read_text()
        # the proxy warms RAG at start: the embedded PostgreSQL comes up under the clone's .state
        assert wait_for(lambda: (clone / ".state" / "pg.url").exists(), timeout=600, every=1), log_path.read_text()
        # ... and its two search processes load the model and connect to it (the warm-up is over)
        store = (clone / ".state" / "pg.url").read_text().strip()
        assert wait_for(lambda: _other_connections(store) >= 2 or server.poll() is not None, timeout=600, every=1), \
            log_path.read_text()
        assert server.poll() is None, log_path.read_text()
        client = subprocess.run(["bash", "-c", readme_block("client")], cwd=clone, env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert client.returncode == 0, client.stderr
        assert "def test_add(): assert add(1, 2) == 3" in client.stdout  # curl: the completion's JSON
        assert client.stdout.rstrip().endswith("total = a + b")  # the SDK example prints the reply text

        # a second `make run` on the same port fails at once, naming the port and PORT
        again = subprocess.run(["bash", "-c", readme_block("server")], cwd=clone, env=env, capture_output=True,
                               text=True, timeout=120, check=False)
        assert again.returncode != 0
        assert f"carrot: port {port} on 127.0.0.1 is not available" in again.stderr and "set PORT" in again.stderr
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the terminal
        server.wait(timeout=180)
    out = log_path.read_text()
    block = out[out.index("Carrot Coder Gateway ready on"):]
    assert f"ready on {url}/v1" in block and f"LITELLM_MASTER_KEY in {clone}/.env" in block
    assert re.search(rf"ollama +{re.escape(fake_upstream.url)} +answers", block), block
    assert "cache      in memory (REDIS_URL unset)" in block and "embedded PostgreSQL" in block
    # quiet: no LiteLLM banner, feedback box or warnings about features nobody configured
    assert "██" not in out and "Give Feedback" not in out and "will NOT be enforced" not in out, out
    assert "Traceback" not in out, out
    assert "RAG warm-up failed" not in out, out  # the search processes start and reach the embedded store
    assert not is_running(clone / ".state"), out  # Ctrl-C stopped the embedded PostgreSQL this run started
