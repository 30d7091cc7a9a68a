"""The PII processes (carrot_hooks/guardrails/pii_process.py): the same redaction as the redactor in process, dead
and hung children replaced (also when a replacement fails to start), new settings obeyed, callers served when they
outnumber the children."""

from __future__ import annotations

import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from carrot_hooks import children
from carrot_hooks.config import load_model
from carrot_hooks.guardrails import pii_process
from carrot_hooks.guardrails.pii import PiiRedactor, Vault
from carrot_hooks.guardrails.pii_process import PiiProcesses, RemoteRedactor
from carrot_hooks.guardrails.settings import GuardrailPolicy
from carrot_hooks.serve import ROOT

TEXTS = [
    "Hi, I am Maria Gonzalez, maria.gonzalez@example.org, phone +1 415-555-0133. Reply to maria.gonzalez@example.org.",
    ("```python\nhost = '192.168.1.0/24'\nrows = data[1::2]\n```\nAsk Jan Kowalski (jan@kowalski.pl) about IBAN "
     "DE89370400440532013000."),
    "nothing personal here: run `pytest -x` and read the traceback",
]


@pytest.fixture(scope="module")
def settings():
    return load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy).pii


@pytest.fixture(scope="module")
def processes(settings):
    procs = PiiProcesses(1)
    assert procs.build(settings) == "ner"
    yield procs
    for child in procs._idle:
        child.close()


def test_a_child_redacts_as_the_redactor_in_process(settings, processes):
    local, remote = PiiRedactor(settings), RemoteRedactor(settings, processes)
    for text in TEXTS:
        vl, vr = Vault(), Vault()
        assert remote.redact(text, vr) == local.redact(text, vl)
        assert vr.by_placeholder == vl.by_placeholder
    out, _ = remote.redact(TEXTS[0], Vault())
    assert out.count("<EMAIL_1>") == 2 and "<PERSON_1>" in out and "<PHONE_1>" in out, out
    assert remote.redact(TEXTS[2], Vault()) == (TEXTS[2], [])


@pytest.fixture
def patient(monkeypatch):
    """Callers wait for a replacement however long it loads (a busy machine)."""
    monkeypatch.setattr(pii_process, "WAIT_S", 300.0)


def test_a_child_that_died_while_idle_costs_no_request(settings, processes, patient):
    remote = RemoteRedactor(settings, processes)
    child = processes._idle[-1]
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait(10)
    assert [h.entity for h in remote.analyze("Call Maria Gonzalez")] == ["PERSON"]  # served by its replacement
    assert processes._idle[-1].proc.pid != child.proc.pid and child.proc.returncode is not None


def test_a_hung_child_fails_its_request_and_is_replaced(settings, processes, patient, monkeypatch):
    monkeypatch.setattr(children, "ANSWER_TIMEOUT_S", 0.5)
    remote = RemoteRedactor(settings, processes)
    child = processes._idle[-1]
    os.kill(child.proc.pid, signal.SIGSTOP)
    with pytest.raises(ConnectionError, match=f"PII process {child.proc.pid} ended .* a replacement is starting"):
        remote.analyze("Tell Maria Gonzalez")
    assert child.proc.wait(10) == -signal.SIGKILL
    assert [h.entity for h in remote.analyze("Tell Maria Gonzalez")] == ["PERSON"]


def test_a_replacement_that_fails_to_start_is_tried_again(settings, processes, monkeypatch, caplog):
    monkeypatch.setattr(pii_process, "RETRY_AFTER_S", 0.1)
    monkeypatch.setattr(pii_process, "WAIT_S", 2.0)
    monkeypatch.setattr(pii_process, "MODULE", "carrot_hooks.no_such_module")  # a child that exits at once
    child = processes._idle[-1]
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait(10)
    remote = RemoteRedactor(settings, processes)
    with caplog.at_level(logging.ERROR, logger="carrot.guardrails.pii"):
        with pytest.raises(TimeoutError, match="no PII process free"):
            remote.analyze("Call Priya Raman")
        assert "a new PII process failed to start" in caplog.text
    monkeypatch.setattr(pii_process, "MODULE", "carrot_hooks.guardrails.pii_process")
    monkeypatch.setattr(pii_process, "WAIT_S", 300.0)
    assert [h.entity for h in remote.analyze("Call Priya Raman")] == ["PERSON"]


def test_a_caller_gives_up_when_no_child_is_free(settings, monkeypatch):
    monkeypatch.setattr(pii_process, "WAIT_S", 0.2)
    with pytest.raises(TimeoutError, match="no PII process free"):  # never built: no child at all
        RemoteRedactor(settings, PiiProcesses(1)).analyze("Call Maria Gonzalez")


def test_adjacent_entities_get_their_own_placeholders(settings, processes):
    text = "cc a.person@example.org b.person@example.org please"
    vault = Vault()
    out, _ = RemoteRedactor(settings, processes).redact(text, vault)
    assert out == "cc <EMAIL_1> <EMAIL_2> please" and vault.restore(out) == text


def test_new_settings_are_obeyed(settings, processes):
    patterns_only = settings.model_copy(update={"spacy_models": ("no_such_pipeline_installed",)})
    text = "Mail John Smith at john.smith@example.com"
    assert RemoteRedactor(settings, processes).redact(text, Vault())[0] == "Mail <PERSON_1> at <EMAIL_1>"
    assert RemoteRedactor(patterns_only, processes).redact(text, Vault())[0] == "Mail John Smith at <EMAIL_1>"


def test_callers_outnumbering_the_children_all_get_answers(settings, processes):
    texts = [f"Ask Maria Gonzalez about ticket {i}, at maria{i}@example.org" for i in range(12)]
    remote = RemoteRedactor(settings, processes)
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda t: remote.redact(t, Vault())[0], texts))
    assert outs == [f"Ask <PERSON_1> about ticket {i}, at <EMAIL_1>" for i in range(12)]


def test_a_requests_texts_are_analysed_in_one_exchange(settings, processes, monkeypatch):
    """An agent's request holds dozens of texts: the PII stage sends them to a child at once (`prefetch`)."""
    texts = [f"Ask Maria Gonzalez about ticket {i}" for i in range(30)]
    remote, sent, real = RemoteRedactor(settings, processes), [], processes.ask
    monkeypatch.setattr(processes, "ask", lambda op, arg, s: (sent.append(list(arg)), real(op, arg, s))[1])
    remote.prefetch(lambda fn: [fn(t) for t in [*texts, texts[0], "", "  "]])
    assert [remote.redact(t, Vault())[0] for t in texts] == [f"Ask <PERSON_1> about ticket {i}" for i in range(30)]
    assert sent == [texts]  # once, each text once, no blank one


def test_a_build_for_new_settings_swaps_in_a_new_generation(settings, monkeypatch):
    """An edit of `pii:` starts children built for it and retires the old ones (a dead one among them is no matter);
    a build that fails leaves the old ones serving and is not tried again at once."""
    procs = PiiProcesses(2)
    try:
        assert procs.build(settings) == "ner" and procs.build(settings.model_copy()) is None  # equal: nothing to do
        old = list(procs._idle)
        os.kill(old[0].proc.pid, signal.SIGKILL)
        patterns_only = settings.model_copy(update={"spacy_models": ("no_such_pipeline_installed",)})
        assert procs.build(patterns_only) == "patterns"
        assert all(c.proc.wait(10) is not None for c in old) and not {c.proc.pid for c in old} & {
            c.proc.pid for c in procs._idle}
        text = "Mail John Smith at john.smith@example.com"
        assert RemoteRedactor(patterns_only, procs).redact(text, Vault())[0] == "Mail John Smith at <EMAIL_1>"
        monkeypatch.setattr(pii_process, "MODULE", "carrot_hooks.no_such_module")
        with pytest.raises((EOFError, OSError)):  # the child exits at once: EOF or a reset, whichever comes first
            procs.build(settings)
        with pytest.raises(ConnectionError, match="failed recently"):
            procs.build(settings)
        assert procs.built is patterns_only and len(procs._idle) == 2
        assert RemoteRedactor(patterns_only, procs).redact(text, Vault())[0] == "Mail John Smith at <EMAIL_1>"
    finally:
        for child in procs._idle:
            child.close()
