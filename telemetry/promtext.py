"""Prometheus' text exposition format for the services' own small registries: counters, gauges, histograms.

A few dozen series per service at most, so a small registry here rather than another dependency.
"""

from __future__ import annotations

Labels = tuple[str, ...]
# Latency buckets in seconds: the loader's inserts (the dev server takes ~10-200 ms per 50k-row batch), API requests.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(names: Labels, values: Labels, extra: str = "") -> str:
    pairs = [f'{n}="{v}"' for n, v in zip(names, values)] + ([extra] if extra else [])
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


class Metric:
    """A counter or gauge family: one value per label tuple."""

    def __init__(self, name: str, kind: str, doc: str, labelnames: Labels = ()) -> None:
        self.name, self.kind, self.doc, self.labelnames = name, kind, doc, labelnames
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value

    def render(self, timestamp_ms: int | None = None) -> list[str]:
        """The family's lines; with timestamp_ms every sample carries it (the time its value is for)."""
        lines = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]
        at = "" if timestamp_ms is None else f" {timestamp_ms}"
        lines += [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}{at}" for k, v in sorted(self.values.items())]
        return lines


class Histogram(Metric):
    def __init__(self, name: str, doc: str, labelnames: Labels, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        super().__init__(name, "histogram", doc, labelnames)
        self.buckets = buckets
        self.counts: dict[Labels, list[int]] = {}  # per bucket, then +Inf

    def observe(self, *labels: str, value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.values[labels] = self.values.get(labels, 0.0) + value

    def render(self, timestamp_ms: int | None = None) -> list[str]:
        lines = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} histogram"]
        at = "" if timestamp_ms is None else f" {timestamp_ms}"
        for k, counts in sorted(self.counts.items()):
            for bound, n in zip((*map(repr, self.buckets), "+Inf"), counts):
                le = 'le="' + bound + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, k, le)} {n}{at}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, k)} {_number(self.values[k])}{at}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, k)} {counts[-1]}{at}")
        return lines
