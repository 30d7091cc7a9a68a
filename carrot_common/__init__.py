"""What `carrot_hooks` and `rag_indexer` share: project paths and typed YAML loading (imports neither)."""
