"""Docs ranking against the real store and embedding model: a long walkthrough does not take the first
place from the focused page that answers."""

from __future__ import annotations

import uuid

import pytest

from rag_indexer.embedding import Embedder
from rag_indexer.indexer import index_tree
from rag_indexer.quick_settings import embedding_spec
from rag_indexer.retrieve import Query, Retriever
from rag_indexer.settings import load_settings
from rag_indexer.store import Store
from tests import services
from tests.rag_sample_docs import prose, write_tree


@pytest.fixture
def docs_index(tmp_path):
    """A walkthrough of twelve steps (one of them rotates keys, in the question's words), a short page
    that answers it, and six short pages on other topics."""
    steps = ["install the agent", "configure storage", "add users", "set quotas", "enable audit logs", "tune caching",
             "rotate the signing keys", "back up the database", "upgrade the cluster", "monitor alerts",
             "scale workers", "restore a snapshot"]
    guide = ["# Platform walkthrough", "", "This walkthrough takes a new deployment from install to operations.", ""]
    for i, step in enumerate(steps):
        extra = " Run `authctl rotate --key signing` to rotate the signing keys before tokens expire." \
            if "signing" in step else ""
        guide += [f"## Step {i + 1}: {step}", "", f"In this step you {step}.{extra} " + prose(step, 14), ""]
    files = {"walkthrough.md": "\n".join(guide),
             "signing_keys.md": "# Key management\n\n## Signing keys\n\n`authctl rotate --key signing` replaces the "
                                "signing keys; the old key keeps verifying tokens for one hour. "
                                + prose("key rotation", 6) + "\n"}
    for topic in ("storage classes", "user roles", "quota limits", "audit log format", "cache settings",
                  "backup schedule"):
        files[topic.replace(" ", "_") + ".md"] = f"# {topic.title()}\n\n{prose(topic, 8)}\n"
    write_tree(tmp_path, files)
    settings, store, name = load_settings(), Store(services.pgvector_url()), f"long-{uuid.uuid4().hex[:8]}"
    index_tree(store, Embedder(embedding_spec(settings, for_query=False)), settings.embedding, "docs", tmp_path, name)
    yield settings, store, name
    store.drop_index("docs", name)
    store.close()


def test_a_focused_page_comes_before_a_long_walkthrough_that_matches_as_well(docs_index):
    """A long guide touching every topic has a chance per chunk to come first: on the ORD-QA set a 99-chunk
    tutorial was first for 11 of 16 file@1 misses (docs file@1 0.822 -> 0.889 with the policy's discount)."""
    settings, store, name = docs_index
    embedder = Embedder(embedding_spec(settings))

    def first(discount: float) -> str:
        cfg = settings.retrieval.model_copy(update={"long_doc_discount": discount})
        return Retriever(store, embedder, cfg).search(Query("docs", name, "How do I rotate the signing keys?", 3))[0].chunk.path

    assert settings.retrieval.long_doc_discount > 0
    assert first(0.0) == "walkthrough.md"  # the case is real: undiscounted, the walkthrough's step leads
    assert first(settings.retrieval.long_doc_discount) == "signing_keys.md"
