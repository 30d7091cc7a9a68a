"""Code-aware PII redaction with Presidio (in process) and per-request placeholder restore.

- `code`: where a prompt holds code (fenced or not) and its literals/comments;
- `recognizers`: Presidio's recognizers (windowed, offline) and the YAML-defined ones;
- `names`: person names in prose (NER windows, name shapes);
- `redactor`: which finding counts where (inside code only validated values), redaction;
- `vault`: stable placeholders per request and their restore; `memo`: the result LRU.

Runs offline: tldextract uses its bundled suffix list, spaCy loads an installed pipeline or
none (patterns-only mode).
"""

from .redactor import PiiHit, PiiRedactor
from .vault import Vault

__all__ = ["PiiHit", "PiiRedactor", "Vault"]
