"""Request metrics since start-up, rendered in Prometheus' text format for `/metrics`.

Counters per (app, model, outcome), tokens and cost per (app, model), and a latency
histogram per model. Fed by the accounting loop from finished requests; reading never
touches the database. Label sets are bounded by the apps and models the user has.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field

# Seconds. Local tokens-per-request times span milliseconds (cache hits) to minutes (long answers).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.cost: dict[tuple[str, str], float] = {}
        self.latency: dict[str, _Histogram] = {}

    def observe(
        self,
        *,
        app: str | None,
        model: str,
        outcome: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        latency_ms: float,
    ) -> None:
        app_label = app or "kernel"
        key = (app_label, model, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1
        for kind, n in (("prompt", prompt_tokens), ("completion", completion_tokens)):
            if n:
                tkey = (app_label, model, kind)
                self.tokens[tkey] = self.tokens.get(tkey, 0) + n
        if cost:
            self.cost[(app_label, model)] = self.cost.get((app_label, model), 0.0) + cost
        hist = self.latency.get(model)
        if hist is None:
            hist = self.latency[model] = _Histogram()
        hist.observe(latency_ms / 1000.0)

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """Prometheus text exposition format 0.0.4. `gauges`: name → (help, value)."""
        out: list[str] = []
        out += _family(
            "byenatos_requests_total",
            "counter",
            "Requests finished, by app, model and outcome.",
            [
                ((("app", a), ("model", m), ("outcome", o)), v)
                for (a, m, o), v in sorted(self.requests.items())
            ],
        )
        out += _family(
            "byenatos_tokens_total",
            "counter",
            "Tokens used, by app, model and kind.",
            [((("app", a), ("model", m), ("kind", k)), v) for (a, m, k), v in sorted(self.tokens.items())],
        )
        out += _family(
            "byenatos_cost_usd_total",
            "counter",
            "Estimated spend in US dollars, by app and model.",
            [((("app", a), ("model", m)), v) for (a, m), v in sorted(self.cost.items())],
        )
        out.append("# HELP byenatos_request_duration_seconds Time from request to the last byte, by model.")
        out.append("# TYPE byenatos_request_duration_seconds histogram")
        for model, hist in sorted(self.latency.items()):
            label = f'model="{_escape(model)}"'
            running = 0
            for bound, count in zip((*BUCKETS, math.inf), hist.counts, strict=True):
                running += count
                le = "+Inf" if bound == math.inf else repr(bound)
                out.append(f'byenatos_request_duration_seconds_bucket{{{label},le="{le}"}} {running}')
            out.append(f"byenatos_request_duration_seconds_sum{{{label}}} {_num(hist.total)}")
            out.append(f"byenatos_request_duration_seconds_count{{{label}}} {hist.n}")
        for name, (help_text, value) in sorted((gauges or {}).items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_num(value)}"]
        out += [
            "# HELP byenatos_start_time_seconds When this process started (unix time).",
            "# TYPE byenatos_start_time_seconds gauge",
            f"byenatos_start_time_seconds {_num(self.started)}",
        ]
        return "\n".join(out) + "\n"


def counter_lines(name: str, help_text: str, samples) -> list[str]:
    """A counter family in the text format: `samples` are ((label, value) pairs, count)."""
    return _family(name, "counter", help_text, samples)


def _family(name: str, kind: str, help_text: str, samples) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines.append(f"{name}{{{body}}} {_num(value)}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
