"""Per target and task type: pass rate (Wilson interval), latency p50/p95, tokens, guardrail actions, failures;
the difference to the baseline with a 95 % Newcombe interval; terminal table, JSON and Markdown."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

Z95 = 1.959964
HEADER = ("target", "task", "n", "pass rate [95% CI]", "vs baseline [95% CI]", "p50", "p95", "tokens in/out", "guardrails")


@dataclass(frozen=True)
class Result:
    target: str
    case: str
    task: str
    kind: str
    passed: bool
    reason: str
    latency: float
    tokens_in: int = 0
    tokens_out: int = 0
    guardrails: str = "none"
    model: str = ""
    arm: str = ""
    status: int = 200


def wilson(passed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(p1: int, n1: int, p2: int, n2: int) -> tuple[float, float, float]:
    """Difference p1/n1 - p2/n2 and its 95 % interval (Newcombe's hybrid score method, from two Wilson intervals)."""
    a, b = p1 / n1, p2 / n2
    l1, u1 = wilson(p1, n1)
    l2, u2 = wilson(p2, n2)
    d = a - b
    return d, d - math.sqrt((a - l1) ** 2 + (u2 - b) ** 2), d + math.sqrt((u1 - a) ** 2 + (b - l2) ** 2)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Summary:
    target: str
    task: str
    n: int
    passed: int
    pass_rate: float
    ci: tuple[float, float]
    p50: float
    p95: float
    tokens_in: int
    tokens_out: int
    guardrails: dict[str, int]
    failures: list[dict]
    diff: tuple[float, float, float] | None = None  # vs the baseline: (difference, low, high)


def summarise(results: list[Result], target: str, task: str) -> Summary:
    rs = [r for r in results if r.target == target and (task == "all" or r.task == task)]
    passed = sum(r.passed for r in rs)
    lat = [r.latency for r in rs if r.status == 200]
    actions = Counter(a for r in rs for a in r.guardrails.split(",") if a and a != "none")
    return Summary(target, task, len(rs), passed, passed / len(rs) if rs else 0.0, wilson(passed, len(rs)),
                   percentile(lat, 50), percentile(lat, 95), sum(r.tokens_in for r in rs),
                   sum(r.tokens_out for r in rs), dict(actions),
                   [{"case": r.case, "reason": r.reason} for r in rs if not r.passed])


@dataclass
class Report:
    targets: list[str]
    baseline: str | None
    results: list[Result]
    summaries: list[Summary] = field(init=False)

    def __post_init__(self) -> None:
        tasks = sorted({r.task for r in self.results})
        self.summaries = [summarise(self.results, t, task) for t in self.targets for task in [*tasks, "all"]]
        if self.baseline:
            base = {s.task: s for s in self.summaries if s.target == self.baseline}
            for s in self.summaries:
                b = base.get(s.task)
                if s.target != self.baseline and b and b.n and s.n:
                    s.diff = newcombe(s.passed, s.n, b.passed, b.n)

    def regressions(self, max_regression: float) -> list[str]:
        """Target/task pairs whose pass rate is below the baseline's by more than `max_regression`."""
        return [f"{s.target} {s.task}: {s.diff[0]:+.1%} vs {self.baseline} (95% CI {s.diff[1]:+.1%}..{s.diff[2]:+.1%})"
                for s in self.summaries if s.diff and -s.diff[0] > max_regression]

    def to_json(self) -> dict:
        return {"targets": self.targets, "baseline": self.baseline,
                "summaries": [asdict(s) for s in self.summaries], "results": [asdict(r) for r in self.results]}

    def rows(self) -> list[list[str]]:
        out = []
        for s in self.summaries:
            diff = "" if s.diff is None else f"{s.diff[0]:+.1%} [{s.diff[1]:+.1%}, {s.diff[2]:+.1%}]"
            guard = ", ".join(f"{k}={v}" for k, v in sorted(s.guardrails.items())) or "-"
            out.append([s.target + (" (baseline)" if s.target == self.baseline else ""), s.task, str(s.n),
                        f"{s.pass_rate:.1%} [{s.ci[0]:.0%}, {s.ci[1]:.0%}]", diff, f"{s.p50:.2f}s", f"{s.p95:.2f}s",
                        f"{s.tokens_in}/{s.tokens_out}", guard])
        return out

    def table(self):
        from rich.table import Table

        t = Table(title="carrot-eval")
        for h in HEADER:
            t.add_column(h, justify="right" if h in ("n", "p50", "p95") else "left")
        for row in self.rows():
            t.add_row(*row)
        return t

    def markdown(self) -> str:
        lines = ["# carrot-eval report", "", "| " + " | ".join(HEADER) + " |",
                 "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows()]
        failures = [(s.target, f) for s in self.summaries if s.task == "all" for f in s.failures]
        if failures:
            lines += ["", "## Failures", "", "| target | case | reason |", "|---|---|---|"]
            lines += [f"| {t} | {f['case']} | {f['reason'].replace('|', '/')} |" for t, f in failures]
        return "\n".join(lines) + "\n"
