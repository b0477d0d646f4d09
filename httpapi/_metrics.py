"""Prometheus text exposition (format 0.0.4) of counters, gauges and histograms, the standard
`process_*` metrics, and the handler that serves them with `/healthz`. Values only: label values
are fixed words chosen by the code (a DNS rcode, an update channel), never a name, an address or
anything else a user sent (privacy rule 8).
"""

from __future__ import annotations

import bisect
import math
import os
import re
import resource
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ._server import HttpRequest, HttpResponse

__all__ = [
    "LATENCY_BUCKETS_S",
    "Histogram",
    "Metric",
    "metrics_handler",
    "process_metrics",
    "render",
]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_VALUE = re.compile(r"[a-z0-9_.-]{1,40}")


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # "counter", "gauge", or "histogram" (then its values are `histogram`'s)
    help: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    histogram: Histogram | None = None

    @classmethod
    def single(cls, name: str, kind: str, help_text: str, value: float) -> Metric:
        return cls(name, kind, help_text, {(): value})

    @classmethod
    def by(
        cls, name: str, kind: str, help_text: str, label: str, values: dict[str, float]
    ) -> Metric:
        return cls(name, kind, help_text, {((label, k),): v for k, v in values.items()})


# Seconds, for a latency from well under a millisecond (loopback) to the handshake timeouts.
LATENCY_BUCKETS_S: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """Observations counted into fixed buckets, for a daemon to observe into on its hot path:
    one bisect over the bounds and two additions, no list or dict built per observation.
    Optionally split by one label whose fixed words are all given here (privacy rule 8), so
    each series is shown from the start, at zero."""

    __slots__ = ("_series", "bounds", "help", "label", "name")

    def __init__(
        self,
        name: str,
        help_text: str,
        bounds: Sequence[float] = LATENCY_BUCKETS_S,
        label: tuple[str, Sequence[str]] | None = None,
    ) -> None:
        self.name = name
        self.help = help_text
        self.bounds = tuple(float(b) for b in bounds)
        if not _NAME.fullmatch(name) or not self.bounds:
            raise ValueError(f"bad histogram {name!r}")
        if any(not math.isfinite(b) for b in self.bounds) or any(
            a >= b for a, b in zip(self.bounds, self.bounds[1:], strict=False)
        ):
            raise ValueError(f"{name}: bounds must be finite and increasing, got {bounds}")
        self.label = label[0] if label else None
        words = tuple(label[1]) if label else ("",)
        if label is not None and (
            not _NAME.fullmatch(label[0])
            or label[0] == "le"
            or not words
            or not all(_LABEL_VALUE.fullmatch(w) for w in words)
        ):
            raise ValueError(f"{name}: bad label {label!r}")
        # Per series: a count per bucket (the last one past every bound, +Inf) and the sum.
        self._series: dict[str, _Series] = {w: _Series(len(self.bounds)) for w in words}

    def observe(self, value: float, label_value: str = "") -> None:
        """Count `value` (in the series `label_value`, one of the words given at creation)."""
        series = self._series[label_value]
        series.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        series.sum += value

    def load(self, counts: Sequence[int], total: float, label_value: str = "") -> None:
        """Take a series counted elsewhere, by a cheaper rule on a hotter path (ddnsd's
        answers): a count per bucket of these bounds, the last past them all, and the sum."""
        series = self._series[label_value]
        if len(counts) != len(series.counts):
            raise ValueError(f"{self.name}: {len(series.counts)} counts, got {len(counts)}")
        series.counts = list(counts)
        series.sum = total

    def metric(self) -> Metric:
        """This histogram among a daemon's metrics, as it stands when they are rendered."""
        return Metric(self.name, "histogram", self.help, histogram=self)

    def count(self, label_value: str = "") -> int:
        return sum(self._series[label_value].counts)

    def lines(self) -> list[str]:
        """This histogram's exposition: cumulative `_bucket{le=...}` ending at `+Inf`, then
        `_sum` and `_count`, for each series."""
        name = self.name
        lines = [f"# HELP {name} {self.help}", f"# TYPE {name} histogram"]
        edges = [_le(b) for b in self.bounds] + ["+Inf"]
        for word, series in sorted(self._series.items()):
            own = f'{self.label}="{word}"' if self.label else ""
            total = 0
            for edge, n in zip(edges, series.counts, strict=True):
                total += n
                lines.append(f'{name}_bucket{{{own + "," if own else ""}le="{edge}"}} {total}')
            labels = f"{{{own}}}" if own else ""
            lines.append(f"{name}_sum{labels} {_number(series.sum)}")
            lines.append(f"{name}_count{labels} {total}")
        return lines


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, bounds: int) -> None:
        self.counts = [0] * (bounds + 1)
        self.sum = 0.0


def render(metrics: Iterable[Metric]) -> bytes:
    lines: list[str] = []
    for metric in metrics:
        if metric.kind == "histogram" and metric.histogram is not None:
            lines.extend(metric.histogram.lines())
            continue
        if not _NAME.fullmatch(metric.name) or metric.kind not in ("counter", "gauge"):
            raise ValueError(f"bad metric {metric.name!r}")
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in sorted(metric.values.items()):
            for _, label_value in labels:
                if not _LABEL_VALUE.fullmatch(label_value):
                    raise ValueError(f"label value {label_value!r} is not a fixed word")
            shown = ",".join(f'{k}="{v}"' for k, v in labels)
            text = _number(value)
            lines.append(f"{metric.name}{{{shown}}} {text}" if shown else f"{metric.name} {text}")
    return ("\n".join(lines) + "\n").encode()


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus's own clients write it ("1.0", "0.005"), so a query's
    `le="1.0"` matches whichever client a dashboard was made with."""
    return repr(bound)


def _number(value: float) -> str:
    """A sample value exactly: whole numbers in full (a byte counter past a million stays
    exact), other floats as the shortest text that reads back the same."""
    if isinstance(value, int):  # bool included
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def process_metrics() -> list[Metric]:
    """The standard process metrics of Prometheus's client libraries, from /proc/self."""
    stat = Path("/proc/self/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    boot = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    soft_fds, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [
        Metric.single(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (int(fields[11]) + int(fields[12])) / ticks,
        ),
        Metric.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            int(fields[21]) * page,
        ),
        Metric.single(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            int(fields[20]),
        ),
        Metric.single(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
            boot + int(fields[19]) / ticks,
        ),
        Metric.single(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            len(os.listdir("/proc/self/fd")),
        ),
        Metric.single(
            "process_max_fds", "gauge", "Maximum number of open file descriptors.", soft_fds
        ),
    ]


def metrics_handler(
    collect: Callable[[], Iterable[Metric]],
    health: Callable[[], str] | None = None,
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """`GET /metrics`: the daemon's metrics and the process's; `GET /healthz`: 200 while
    `health()` says "serving", 503 with the word it says otherwise ("starting", "draining")."""

    async def handle(request: HttpRequest) -> HttpResponse:
        path = request.target.split("?")[0]
        if request.method != "GET" or path not in ("/metrics", "/healthz"):
            return HttpResponse(404, b"not found\n")
        if path == "/healthz":
            state = health() if health is not None else "serving"
            return HttpResponse(200 if state == "serving" else 503, f"{state}\n".encode())
        body = render([*collect(), *process_metrics()])
        return HttpResponse(200, body, "text/plain; version=0.0.4; charset=utf-8")

    return handle
