"""carrot-review: PR review bot — linters gate, the model (through the Carrot gateway) advises."""
