"""`carrot-eval`: run task suites through the gateway against targets and compare them with a baseline.

    from carrot_eval import evaluate
    report = evaluate("http://127.0.0.1:4000", key, ["ds-coder-v2@2025-11-30"], ["evals"], baseline="ds-coder-v2@2025-09-23")
"""

from .report import Report
from .runner import Target, evaluate

__all__ = ["Report", "Target", "evaluate"]
