"""Context stage: retrieval-augmented context for rag-code / rag-doc requests (being built, see issue 4)."""

from __future__ import annotations

from .context import RequestContext


async def inject_context(ctx: RequestContext, data: dict) -> None:
    """No vector store is wired in yet: say so in the `x-carrot-rag` header."""
    ctx.rag_status = "unavailable"
