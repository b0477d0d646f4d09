"""Prometheus text exposition (format 0.0.4) of counters and gauges, and the handler that
serves them. Values only: label values are fixed words chosen by the code (a DNS rcode, an
update channel), never a name, an address or anything else a user sent (privacy rule 8).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ._server import HttpRequest, HttpResponse

__all__ = ["Metric", "metrics_handler", "render"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_VALUE = re.compile(r"[a-z0-9_.-]{1,40}")


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    @classmethod
    def single(cls, name: str, kind: str, help_text: str, value: float) -> Metric:
        return cls(name, kind, help_text, {(): value})

    @classmethod
    def by(
        cls, name: str, kind: str, help_text: str, label: str, values: dict[str, float]
    ) -> Metric:
        return cls(name, kind, help_text, {((label, k),): v for k, v in values.items()})


def render(metrics: Iterable[Metric]) -> bytes:
    lines: list[str] = []
    for metric in metrics:
        if not _NAME.fullmatch(metric.name) or metric.kind not in ("counter", "gauge"):
            raise ValueError(f"bad metric {metric.name!r}")
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in sorted(metric.values.items()):
            for _, label_value in labels:
                if not _LABEL_VALUE.fullmatch(label_value):
                    raise ValueError(f"label value {label_value!r} is not a fixed word")
            shown = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(
                f"{metric.name}{{{shown}}} {value:g}" if shown else f"{metric.name} {value:g}"
            )
    return ("\n".join(lines) + "\n").encode()


def metrics_handler(
    collect: Callable[[], Iterable[Metric]],
) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    async def handle(request: HttpRequest) -> HttpResponse:
        if request.method != "GET" or request.target.split("?")[0] != "/metrics":
            return HttpResponse(404, b"not found\n")
        return HttpResponse(200, render(collect()), "text/plain; version=0.0.4; charset=utf-8")

    return handle
