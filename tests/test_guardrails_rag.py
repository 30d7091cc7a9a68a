"""Prompt guardrails check what the caller sent, not the gateway's own prompt pack or retrieved context:
through the real proxy, a real pgvector index and the fake upstream."""

from __future__ import annotations

import json
import uuid

import pytest

from carrot_hooks.prompts import load_pack
from tests.test_rag_e2e import ROOT, ask, context_block, drop_index, run_cli

DOC = """# Access requests

## Who approves access

Access to the build cluster is approved by Maria Gonzalez (maria.gonzalez@example.org, +1 415-555-0133).
Training material explains how to recognise a phishing page and how to report credential harvesting.
Description: the approver checks the ticket, the team and the expiry date before granting the role.
"""


@pytest.fixture(scope="module")
def access_docs(tmp_path_factory, store_env):
    folder = tmp_path_factory.mktemp("access-docs")
    (folder / "access.md").write_text(DOC)
    name = f"e2e-access-{uuid.uuid4().hex[:8]}"
    out = run_cli("docs", str(folder), "--collection", name, env=store_env)
    assert out.returncode == 0, out.stderr
    yield name
    drop_index(store_env, "docs", name)


def test_retrieved_context_travels_verbatim_while_the_callers_pii_is_redacted(rag_proxy, fake_upstream, marker,
                                                                              access_docs):
    raw, messages = ask(rag_proxy, fake_upstream, marker, "rag-doc",
                        "Who approves access to the build cluster? Reply to bob.stone@example.net", refs=access_docs)
    assert raw.headers["x-carrot-rag"].startswith("injected:")
    block = context_block(messages)
    for operator_text in ("Maria Gonzalez", "maria.gonzalez@example.org", "+1 415-555-0133", "Description:",
                          "phishing page"):
        assert operator_text in block  # the index's own text is not masked or blocked
    question = messages[-1]["content"]
    assert "bob.stone@example.net" not in json.dumps(messages) and "<EMAIL_1>" in question
    assert "pii:redact" in raw.headers["x-carrot-guardrails"]
    assert "policy" not in raw.headers["x-carrot-guardrails"]  # the doc's wording trips no caller policy rule
    pack = load_pack(ROOT / "prompts" / "rag_doc@v1.md").body
    assert (messages[0]["role"], messages[0]["content"]) == ("system", pack)  # the prompt pack arrives intact
