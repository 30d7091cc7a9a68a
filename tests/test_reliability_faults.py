"""Dependencies failing while the gateway serves: the vector store cut off and back, Redis stopped
and restarted, the routing YAML broken — one at a time, then all during concurrent traffic.
Every request is answered, none with a 5xx; context and cache come back with their service."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from carrot_hooks.rag_search import RETRY_AFTER_S
from tests.proxy_process import descendants
from tests.reliability_support import indexed_docs
from tests.services import wait_for

PHRASE = "zebrafish turbine calibration"


@pytest.fixture(scope="module")
def collection(chaos, tmp_path_factory):
    """A doc collection indexed into the real pgvector store (directly, not through the forwarder)."""
    folder = tmp_path_factory.mktemp("chaos-docs")
    (folder / "turbines.md").write_text(
        f"# Turbine maintenance\n\n## Calibration\n\nThe {PHRASE} procedure: spin the rotor to 300 rpm, "
        "read the strain gauge, and write the offset into the controller's calibration table.\n")
    with indexed_docs(chaos.store_url, folder, "chaos-docs") as name:
        yield name


def ask(p, marker, task="chat", stream=False, refs=None, text=None, timeout=60.0, headers=None) -> httpx.Response:
    headers = {**p.headers(), "X-Task-Type": task, **({"X-Context-Refs": refs} if refs else {}), **(headers or {})}
    body = {"model": "gpt-4o", "stream": stream,
            "messages": [{"role": "user", "content": text or f"How does the {PHRASE} work? ({marker})"}]}
    with httpx.stream("POST", f"{p.base_url}/v1/chat/completions", json=body, headers=headers,
                      timeout=timeout) as r:
        r.read()
    return r


def stream_complete(r: httpx.Response) -> bool:
    events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    return bool(events) and events[-1] == "[DONE]" and not any('"error"' in e for e in events)


def context_sent(fake_upstream, marker) -> bool:
    reqs = fake_upstream.find(marker)
    return bool(reqs) and "<retrieved-context" in reqs[-1].text and PHRASE in reqs[-1].text


def test_vector_store_cut_off_serves_without_context_then_context_returns(chaos, fake_upstream, collection):
    first = []  # the first rag request may find the store "recently failed" after other tests: poll
    assert wait_for(lambda: first.append(m := f"vs-up-{uuid.uuid4().hex[:8]}") or ask(chaos, m, "rag-doc", refs=collection)
                    .headers["x-carrot-rag"].startswith("injected:"), timeout=30, every=0.5)
    assert context_sent(fake_upstream, first[-1])
    chaos.store.stop()
    try:
        m = f"vs-down-{uuid.uuid4().hex[:8]}"
        r = ask(chaos, m, "rag-doc", refs=collection)
        assert r.status_code == 200, r.text
        assert r.headers["x-carrot-rag"] == "unavailable"
        assert r.json()["choices"][0]["message"]["content"]
        assert "<retrieved-context" not in fake_upstream.find(m)[-1].text
    finally:
        chaos.store.start()
    back = []
    assert wait_for(lambda: back.append(ask(chaos, f"vs-back-{len(back)}-{uuid.uuid4().hex[:6]}", "rag-doc",
                                            refs=collection)) or back[-1].headers["x-carrot-rag"].startswith("injected:"),
                    timeout=30, every=0.5), [b.headers.get("x-carrot-rag") for b in back]
    assert all(b.status_code == 200 for b in back)


def search_processes(p) -> set[int]:
    """Pids of the gateway's search processes (`carrot_hooks.rag_search` children of its proxy's threads)."""
    return {k for k in descendants(p.proc.pid) if b"carrot_hooks.rag_search" in _cmdline(k)}


def pii_processes(p) -> set[int]:
    """Pids of the gateway's PII processes."""
    return {k for k in descendants(p.proc.pid) if b"carrot_hooks.guardrails.pii_process" in _cmdline(k)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def test_search_processes_killed_serve_without_context_then_new_ones_retrieve(chaos, fake_upstream, collection):
    """Retrieval runs in child processes of the proxy; killed, each is replaced on its next search: every
    request is answered meanwhile, and context comes back from new processes."""
    assert wait_for(lambda: ask(chaos, f"sp-up-{uuid.uuid4().hex[:8]}", "rag-doc", refs=collection)
                    .headers["x-carrot-rag"].startswith("injected:"), timeout=30, every=0.5)
    old = search_processes(chaos)
    assert old
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    answers = []
    assert wait_for(lambda: answers.append(ask(chaos, f"sp-back-{len(answers)}-{uuid.uuid4().hex[:6]}", "rag-doc",
                                               refs=collection)) or answers[-1].headers["x-carrot-rag"].startswith("injected:"),
                    timeout=60, every=0.2), [a.headers.get("x-carrot-rag") for a in answers]
    assert all(a.status_code == 200 for a in answers)
    assert {a.headers["x-carrot-rag"] for a in answers[:-1]} <= {"unavailable"}
    assert search_processes(chaos) and not set(descendants(chaos.proc.pid)) & old  # the killed ones were reaped


def test_pii_processes_killed_are_replaced_and_no_pii_leaves_meanwhile(chaos, fake_upstream):
    """The PII analysis runs in child processes of the proxy; killed, each is replaced off the request path. A
    med-risk request meanwhile is redacted or refused (503, fails closed), never sent with the address."""
    old = pii_processes(chaos)
    assert len(old) == 2, old
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    answers = []

    def redacted_again() -> bool:
        m = f"pii-back-{len(answers)}-{uuid.uuid4().hex[:6]}"
        answers.append((m, ask(chaos, m, text=f"Mail the report to {m}@example.org please ({m})",
                               headers={"X-Risk-Level": "med"})))
        return answers[-1][1].status_code == 200

    assert wait_for(redacted_again, timeout=120, every=0.2), [(r.status_code, r.text[:200]) for _, r in answers]
    for m, r in answers:
        assert r.status_code == 200 or (r.status_code == 503 and "pii-engine-failure" in r.text), r.text
        assert all(f"{m}@example.org" not in q.text for q in fake_upstream.find(m))
    assert "<EMAIL_1>" in fake_upstream.find(answers[-1][0])[-1].text
    new = pii_processes(chaos)
    assert len(new) == 2 and not new & old and not set(descendants(chaos.proc.pid)) & old  # replaced, reaped


def test_redis_stopped_and_restarted_serves_throughout_and_cache_resumes(chaos, fake_upstream):
    m = f"redis-{uuid.uuid4().hex[:8]}"
    assert ask(chaos, m).headers["x-carrot-cache"] == "miss"
    assert ask(chaos, m).headers["x-carrot-cache"] == "hit"
    chaos.redis.stop()
    try:
        for i in range(3):
            r = ask(chaos, f"{m}-down-{i}", stream=bool(i % 2))
            assert r.status_code == 200 and r.headers["x-carrot-cache"] == "miss", r.text
    finally:
        chaos.redis.start()
    again = f"{m}-again"

    def hit() -> bool:
        ask(chaos, again)
        return ask(chaos, again).headers["x-carrot-cache"] == "hit"

    assert wait_for(hit, timeout=30, every=0.5)


def _break_routing(chaos) -> str:
    path = chaos.policy_dir / "routing.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    doc["rules"][4]["model"] = 42
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return original


def test_all_faults_during_concurrent_traffic(chaos, fake_upstream, collection):
    """6 clients while Redis, the vector store and the routing file each break and recover; each state
    lasts until every kind of request has been answered twice after it began."""
    results: list[tuple[str, int | str, bool, float]] = []  # kind, status, complete, when the request was sent
    stop = threading.Event()
    kinds = ["editor", "refactor-stream", "rag-doc", "repeat", "fim"]

    def worker(i: int) -> None:
        n = 0
        while not stop.is_set() and n < 500:
            kind = kinds[(i + n) % len(kinds)]
            n += 1
            marker = f"load-{i}-{n}-{uuid.uuid4().hex[:6]}"
            sent = time.monotonic()
            try:
                if kind == "fim":  # streaming FIM is exercised in test_reliability_upstream
                    r = httpx.post(f"{chaos.base_url}/v1/completions", headers=chaos.headers(), timeout=30,
                                   json={"model": "gpt-4o", "prompt": f"# {marker}\n", "suffix": "\n"})
                elif kind == "refactor-stream":
                    r = ask(chaos, marker, "refactor", stream=True)
                elif kind == "rag-doc":
                    r = ask(chaos, marker, "rag-doc", refs=collection)
                elif kind == "repeat":
                    r = ask(chaos, "the-same-question", text="the same question every time")
                else:
                    r = ask(chaos, marker, "editor")
            except httpx.HTTPError as e:
                results.append((kind, f"lost: {e!r}", False, sent))
                continue
            results.append((kind, r.status_code, stream_complete(r) if kind == "refactor-stream" else True, sent))

    def traffic_through_it() -> None:
        """Return once every kind of request sent from now on has been answered twice."""
        since = time.monotonic()

        def twice_each() -> bool:
            answered = Counter(k for k, *_, sent in list(results) if sent >= since)
            return all(answered[k] >= 2 for k in kinds)

        assert wait_for(twice_each, timeout=180), Counter(k for k, *_ in results)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        traffic_through_it()
        chaos.redis.stop()
        traffic_through_it()
        chaos.redis.start()
        traffic_through_it()
        seen = len(chaos.log())
        original = _break_routing(chaos)
        chaos.wait_log("rules.4.model", after=seen)
        traffic_through_it()
        (chaos.policy_dir / "routing.yaml").write_text(original)
        traffic_through_it()
        chaos.store.stop()
        traffic_through_it()
        chaos.store.start()
        traffic_through_it()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    statuses = Counter((k, s) for k, s, *_ in results)
    assert len(results) > 50, statuses
    assert all(s == 200 for _, s, *_ in results), statuses
    assert all(ok for _, _, ok, _ in results), [r for r in results if not r[2]][:5]
    assert "rules.4.model" in chaos.log() and str(chaos.policy_dir / "routing.yaml") in chaos.log()
    assert wait_for(lambda: ask(chaos, "after", "rag-doc", refs=collection).headers["x-carrot-rag"]
                    .startswith("injected:"), timeout=30, every=0.5)
    assert wait_for(lambda: ask(chaos, "r", text="the same question every time").headers["x-carrot-cache"] == "hit",
                    timeout=30, every=0.5)
    print(json.dumps({f"{k}:{s}": n for (k, s), n in statuses.items()}))


BROKEN = {
    "yaml-syntax": lambda p: p.write_text("rules: [unclosed\n  - {id: x\n"),
    "empty": lambda p: p.write_text(""),
    "binary": lambda p: p.write_bytes(b"\x00\xff\xfe" * 1000),
    "missing": lambda p: p.unlink(),
}


def read_every_policy_file(chaos, collection) -> None:
    """Requests that make the proxy look at each policy file: a rag-doc one, and one with a key that is not
    the master key (only such keys read keys.yaml)."""
    ask(chaos, f"probe-{uuid.uuid4().hex[:6]}", "rag-doc", refs=collection)
    httpx.get(f"{chaos.base_url}/v1/models", headers={"Authorization": "Bearer sk-no-such-tenant"}, timeout=60)


def wait_retrieval_steady(chaos, collection, timeout: float = 90) -> None:
    """Wait until rag-doc requests have had context for longer than RETRY_AFTER_S since the store last came back
    and since the last one without. A search process whose connect failed during an outage answers "unavailable"
    for that long while another one already retrieves: one success does not mean the next request gets context."""
    last_miss, seen = [chaos.store.started_at], []

    def steady() -> bool:
        seen.append(ask(chaos, f"pre-{uuid.uuid4().hex[:6]}", "rag-doc", refs=collection).headers["x-carrot-rag"])
        if not seen[-1].startswith("injected:"):
            last_miss[0] = time.monotonic()
        return time.monotonic() - last_miss[0] > RETRY_AFTER_S

    assert wait_for(steady, timeout=timeout, every=0.5), f"x-carrot-rag of the probes: {seen}"


@pytest.mark.parametrize("policy", ["routing.yaml", "guardrails.yaml", "rag.yaml", "keys.yaml"])
@pytest.mark.parametrize("how", sorted(BROKEN))
def test_broken_policy_file_keeps_last_valid_version(chaos, fake_upstream, collection, policy, how):
    path = chaos.policy_dir / policy
    original = path.read_text()
    read_every_policy_file(chaos, collection)  # the last valid versions, keys.yaml's included
    wait_retrieval_steady(chaos, collection)
    seen = len(chaos.log())
    BROKEN[how](path)
    try:  # the proxy logs every look at a changed file (rejected, unreadable or reloaded) naming it
        chaos.wait_log(str(path), after=seen, probe=lambda: read_every_policy_file(chaos, collection))
        for task, stream in (("editor", False), ("rag-doc", True), ("chat", False)):
            r = ask(chaos, f"broken-{policy}-{how}-{uuid.uuid4().hex[:6]}", task, stream=stream, refs=collection
                    if task == "rag-doc" else None)
            assert r.status_code == 200, r.text
            assert r.headers["x-carrot-route"] in {"small-model-tasks", "default-v2"}
            if task == "rag-doc":
                assert r.headers["x-carrot-rag"].startswith("injected:"), r.headers
            if stream:
                assert stream_complete(r), r.text[-500:]
    finally:
        path.write_text(original)
