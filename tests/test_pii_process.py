"""The PII processes (carrot_hooks/guardrails/pii_process.py): the same redaction as the redactor in process, a
dead child replaced, new settings obeyed, callers served when they outnumber the children."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from carrot_hooks.config import load_model
from carrot_hooks.guardrails.pii import PiiRedactor, Vault
from carrot_hooks.guardrails import pii_process
from carrot_hooks.guardrails.pii_process import PiiProcesses, RemoteRedactor
from carrot_hooks.guardrails.settings import GuardrailPolicy
from carrot_hooks.serve import ROOT

TEXTS = [
    "Hi, I am Maria Gonzalez, maria.gonzalez@example.org, phone +1 415-555-0133. Reply to maria.gonzalez@example.org.",
    "```python\nhost = '192.168.1.0/24'\nrows = data[1::2]\n```\nAsk Jan Kowalski (jan@kowalski.pl) about IBAN "
    "DE89370400440532013000.",
    "nothing personal here: run `pytest -x` and read the traceback",
]


@pytest.fixture(scope="module")
def settings():
    return load_model(ROOT / "policy" / "guardrails.yaml", GuardrailPolicy).pii


@pytest.fixture(scope="module")
def processes(settings):
    procs = PiiProcesses(1)
    assert procs.warm(settings) == "ner"
    yield procs
    for _ in range(procs.count):
        procs._idle.get(timeout=60).close()


def test_a_child_redacts_as_the_redactor_in_process(settings, processes):
    local, remote = PiiRedactor(settings), RemoteRedactor(settings, processes)
    for text in TEXTS:
        vl, vr = Vault(), Vault()
        assert remote.redact(text, vr) == local.redact(text, vl)
        assert vr.by_placeholder == vl.by_placeholder
    out, hits = remote.redact(TEXTS[0], Vault())
    assert out.count("<EMAIL_1>") == 2 and "<PERSON_1>" in out and "<PHONE_1>" in out, out
    assert remote.redact(TEXTS[2], Vault()) == (TEXTS[2], [])


def test_a_dead_child_fails_one_request_and_is_replaced_off_the_request_path(settings, processes):
    remote = RemoteRedactor(settings, processes)
    child = processes._idle.queue[-1]
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait(10)
    with pytest.raises(ConnectionError, match=f"PII process {child.proc.pid} ended .* a replacement is starting"):
        remote.analyze("Call Maria Gonzalez")
    assert [h.entity for h in remote.analyze("Call Maria Gonzalez")] == ["PERSON"]  # waits for the replacement
    assert processes._idle.queue[-1].proc.pid != child.proc.pid


def test_a_caller_gives_up_when_no_child_is_free(settings, monkeypatch):
    monkeypatch.setattr(pii_process, "WAIT_S", 0.2)
    procs = PiiProcesses(1)
    procs._started = True  # as if its one child were busy with another caller
    with pytest.raises(TimeoutError, match="no PII process free"):
        RemoteRedactor(settings, procs).analyze("Call Maria Gonzalez")


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
