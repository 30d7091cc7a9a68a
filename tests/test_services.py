"""tests/services.py against real servers: discovery, the own-server fallback, fault handles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from tests import services

ROOT = Path(__file__).resolve().parent.parent
PRELUDE = "import tests.services as services; "


def run_services(code: str, env: dict[str, str | None], timeout: float = 60) -> str:
    """Run `code` in a fresh interpreter that has imported `services`, with `env` applied."""
    full = {k: v for k, v in os.environ.items() if k not in env}
    full.update({k: v for k, v in env.items() if v is not None})
    out = subprocess.run(
        [sys.executable, "-c", f"{PRELUDE}\n{code}"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_redis_url_answers_and_stores():
    url = services.redis_url()
    client = redis.Redis.from_url(url)
    key = f"carrot-test-services-{os.getpid()}"
    client.set(key, "v", ex=30)
    assert client.get(key) == b"v"
    client.delete(key)


def test_forced_own_redis_is_started_then_stopped_at_exit():
    url = run_services(
        "u = services.redis_url(); import redis; redis.Redis.from_url(u).set('k', 'v'); print(u)",
        {"REDIS_URL": None, services.FORCE_OWN_ENV: "1"},
    )
    assert url.startswith("redis://127.0.0.1:") and url != services.LOCAL_REDIS_URL
    # the interpreter has exited: its server must be gone with it
    assert not services.redis_answers(url, timeout=0.5)


def test_explicit_redis_url_is_used_as_given():
    with services.RedisServer("explicit") as own:
        url = run_services("print(services.redis_url())", {"REDIS_URL": own.url})
        assert url == own.url


def run_failing(code: str, env: dict[str, str]) -> str:
    """Run `code` after importing `services`; it must fail. Returns its stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code], cwd=ROOT,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_unreachable_redis_url_is_a_clear_error_not_a_skip():
    dead = f"redis://:hunter2@127.0.0.1:{services.free_port()}/0"
    err = run_failing("services.redis_url()", {"REDIS_URL": dead})
    assert "ServiceError: REDIS_URL=redis://:***@127.0.0.1" in err
    assert "does not answer PING" in err and "hunter2" not in err


def test_private_redis_stop_start_pause_resume():
    with services.RedisServer("fault") as srv:
        client = redis.Redis.from_url(srv.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        assert client.set("k", "v")

        srv.stop()
        with pytest.raises(redis.ConnectionError):
            client.ping()

        srv.start()
        assert client.ping()
        assert client.get("k") is None  # no persistence: a restarted test Redis is empty

        srv.pause()
        with pytest.raises(redis.TimeoutError):
            redis.Redis.from_url(srv.url, socket_timeout=0.3, socket_connect_timeout=0.3).ping()
        srv.resume()
        assert client.ping()
        data_dir = srv.dir
    assert not data_dir.exists()


def test_two_private_redis_servers_are_independent():
    with services.RedisServer("a") as a, services.RedisServer("b") as b:
        assert a.port != b.port
        redis.Redis.from_url(a.url).set("only-in-a", 1)
        assert redis.Redis.from_url(b.url).get("only-in-a") is None


def test_orphan_of_a_killed_test_process_is_reaped():
    child = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + "import time; s = services.RedisServer('orphan').start(); "
                                         "print(s.port, s.proc.pid, flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    port, pid = map(int, child.stdout.readline().split())
    child.send_signal(signal.SIGKILL)  # atexit does not run: the server outlives its owner
    child.wait(timeout=10)
    assert services.redis_answers(f"redis://127.0.0.1:{port}/0")

    assert pid in services.reap_orphans()
    assert not services.redis_answers(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    assert not (services.STATE_DIR / "redis" / f"orphan-{port}").exists()


def test_pgvector_url_serves_vector_distance():
    url = services.pgvector_url()
    with psycopg.connect(url, connect_timeout=5) as conn:
        dist = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone()[0]
    assert dist == pytest.approx(2.0)


def test_unreachable_pgvector_url_names_the_variable():
    dead = f"postgresql://carrot:s3cret@127.0.0.1:{services.free_port()}/x"
    err = run_failing("services.pgvector_url()", {"PGVECTOR_URL": dead})
    assert "ServiceError: PGVECTOR_URL=postgresql://carrot:***@127.0.0.1" in err
    assert "cannot serve pgvector" in err and "s3cret" not in err


def test_postgres_without_pgvector_is_refused_with_the_reason(monkeypatch):
    with psycopg.connect(services.LOCAL_PG_URL, connect_timeout=3) as conn:
        has_vector = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    problem = services._vector_problem(services.LOCAL_PG_URL, create=False)
    if has_vector:  # a machine whose local Postgres ships pgvector
        assert problem in (None, "the vector extension is not created in this database")
        return
    assert problem == "the server has no pgvector extension installed"
    monkeypatch.setenv("DATABASE_URL", services.LOCAL_PG_URL)
    monkeypatch.delenv("PGVECTOR_URL", raising=False)
    with pytest.raises(services.ServiceError, match="DATABASE_URL=.*no pgvector extension"):
        services.pgvector_url.__wrapped__()


def test_redact_hides_only_the_password():
    assert services.redact("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert services.redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert services.redact("redis://h:1/0") == "redis://h:1/0"


def test_forced_own_pgvector_starts_embedded_server():
    out = run_services(
        "u = services.pgvector_url(); print(u); print(services._vector_problem(u, create=False))",
        {"PGVECTOR_URL": None, "DATABASE_URL": None, services.FORCE_OWN_ENV: "1"},
        timeout=180,
    )
    url, problem = out.splitlines()[-2:]
    assert url != services.LOCAL_PG_URL
    assert problem == "None"


def test_fresh_database_is_empty_and_dropped_afterwards():
    with services.fresh_database("carrot_svc_test") as url:
        name = url.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(url) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        assert tables == 0
    with psycopg.connect(services.postgres_url()) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


def test_unreachable_database_url_names_the_variable():
    dead = f"postgresql://carrot:s3cret@127.0.0.1:{services.free_port()}/x"
    err = run_failing("services.postgres_url()", {"DATABASE_URL": dead})
    assert "ServiceError: DATABASE_URL=postgresql://carrot:***@127.0.0.1" in err
    assert "does not answer" in err and "s3cret" not in err
