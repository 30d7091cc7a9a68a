"""Code and documentation indexer for the gateway's retrieval hook."""
