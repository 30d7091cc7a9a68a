"""Fault-test support: a TCP forwarder that can cut a service off and bring it back, an egress
recorder injected into the proxy process, and the one "chaos" proxy the fault tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from carrot_hooks.serve import ROOT
from tests import services
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess


class Forwarder:
    """A loopback TCP port relaying to `target` ((host, port) or a unix socket path).

    `stop()` closes the listener and every open connection (the service "goes away" for the
    proxy); `start()` listens again on the same port, and `started_at` is when (time.monotonic()).
    """

    def __init__(self, target: tuple[str, int] | str):
        self.target = target
        self.port = services.free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.start()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _open(self):
        if isinstance(self.target, str):
            return await asyncio.open_unix_connection(self.target)
        return await asyncio.open_connection(*self.target)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None or not self._server.is_serving():  # accepted just before a stop closed the port
            writer.transport.abort()
            return
        self._writers.add(writer)  # at once: a stop while the upstream is still opening cuts this one too
        try:
            up_reader, up_writer = await self._open()
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        if writer not in self._writers:  # stopped meanwhile
            up_writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        """Listener closed, open connections cut, then wait: since Python 3.12.1 `wait_closed` also waits
        for the connections the server accepted."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def start(self) -> None:
        if self._server is None:
            self._call(self._start())
            self.started_at = time.monotonic()

    def stop(self) -> None:
        self._call(self._stop())


EGRESS_HOOK = '''
"""Injected by tests/reliability_support.py: record every outbound connect/DNS lookup of this
process and fail any that does not go to loopback."""
import ipaddress, json, os, sys, traceback

_LOG = os.environ["CARROT_EGRESS_LOG"]
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "", None}


def _is_loopback(host):
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _hook(event, args):
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple):
            host, port = address[0], address[1]
        else:
            host, port = "unix", str(address)
    elif event == "socket.getaddrinfo":
        host, port = args[0], args[1]
        host = host.decode() if isinstance(host, bytes) else host
    else:
        return
    ok = host == "unix" or _is_loopback(host)
    with open(_LOG, "a") as fh:
        where = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack(limit=40)[:-2]]
        fh.write(json.dumps({"event": event, "host": str(host), "port": str(port), "allowed": ok,
                             "stack": where}) + "\\n")
    if not ok:
        raise OSError(f"egress to {host}:{port} blocked by the test")


sys.addaudithook(_hook)
'''


class ChaosProxy(ProxyProcess):
    """The gateway with every dependency on a handle the tests can break: its own Redis, the vector
    store behind a Forwarder, upstream timeouts of 2 s, and the egress recorder."""

    def __init__(self, fake: FakeUpstream):
        self.redis = services.start_private_redis("chaos")
        self.store_url = services.pgvector_url()
        self.store = Forwarder(_pg_target(self.store_url))
        work = Path(tempfile.mkdtemp(prefix="carrot-chaos-"))
        (work / "sitecustomize.py").write_text(EGRESS_HOOK)
        self.egress_log = work / "egress.jsonl"
        cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
        cfg["router_settings"]["timeout"] = 2
        cfg["litellm_settings"]["request_timeout"] = 2
        config = work / "litellm_config.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        db = urlsplit(self.store_url).path.lstrip("/") or "postgres"
        super().__init__(fake.url, config=config, env={
            "PYTHONPATH": f"{work}:{ROOT}", "CARROT_EGRESS_LOG": str(self.egress_log),
            "REDIS_URL": self.redis.url, "REDIS_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "2",
            "PGVECTOR_URL": f"postgresql://postgres@127.0.0.1:{self.store.port}/{db}",
            "CARROT_PII_PROCESSES": "2",  # the production default: a fault test kills both
        })
        self.allowed = {("127.0.0.1", str(fake.port)), ("127.0.0.1", str(self.redis.port)),
                        ("127.0.0.1", str(self.store.port))}

    def egress(self) -> list[dict]:
        if not self.egress_log.exists():
            return []
        return [json.loads(line) for line in self.egress_log.read_text().splitlines() if line]

    def stop(self) -> None:
        super().stop()
        self.store.stop()
        self.redis.cleanup()


def _pg_target(url: str) -> tuple[str, int] | str:
    """Where a Postgres URL really connects: (host, port) or the unix socket file."""
    parts = urlsplit(url)
    port = parts.port or 5432
    socket_dir = (parse_qs(parts.query).get("host") or [None])[0]
    if socket_dir and socket_dir.startswith("/"):
        return f"{socket_dir}/.s.PGSQL.{port}"
    return (parts.hostname or "127.0.0.1", port)


@contextlib.contextmanager
def indexed_docs(store_url: str, folder: Path, prefix: str):
    """Index `folder` with `rag-indexer docs` as a fresh collection in the store at `store_url`; drop it after."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, "-m", "rag_indexer.cli", "--no-progress", "docs", str(folder),  # noqa: PLW1510
                          "--collection", name], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PGVECTOR_URL": store_url})
    assert out.returncode == 0, out.stderr
    try:
        yield name
    finally:
        from rag_indexer.store import Store

        store = Store(store_url)
        store.drop_index("docs", name)
        store.close()
