"""A small HTTP/1.1 server for the daemons' own APIs: DynDNS2, device lookup, metrics; and
what the pages people see share (language choice, stylesheet).

Not for proxying browsers (relayd's ingress uses h11 for that): it serves short requests with
bodies of known length, and answers anything else with a clear error.
"""

from ._language import choose_language
from ._metrics import LATENCY_BUCKETS_S, Histogram, Metric, metrics_handler, process_metrics, render
from ._pages import STYLESHEET, STYLESHEET_PATH
from ._server import HttpRequest, HttpResponse, HttpServer, encode_response, parse_head

__all__ = [
    "LATENCY_BUCKETS_S",
    "STYLESHEET",
    "STYLESHEET_PATH",
    "Histogram",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "Metric",
    "choose_language",
    "encode_response",
    "metrics_handler",
    "parse_head",
    "process_metrics",
    "render",
]
