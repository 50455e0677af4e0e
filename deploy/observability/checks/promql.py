"""The shop's metric names, and the metric names a PromQL expression uses.

Standard library only. `metric_names(expr)` is a small lexer, not a PromQL
parser: it drops strings, label matchers, range/offset brackets, Grafana
variables and grouping clauses, then takes every identifier that is not
followed by "(" (a function or aggregation) and is not a keyword. Enough for
the expressions of the dashboard and the rules; `promtool` (when installed)
checks their syntax for real.
"""

from __future__ import annotations

import re

# What the services export (names as Prometheus stores them). Histograms add
# _bucket, _sum and _count.
COUNTERS = {
    "grpc_server_started_total", "grpc_server_handled_total",
    "grpc_server_msg_received_total", "grpc_server_msg_sent_total",
    "grpc_client_started_total", "grpc_client_handled_total",
    "grpc_client_msg_received_total", "grpc_client_msg_sent_total",
    "shop_balancer_picks_total",
    "http_server_requests_total",
}
GAUGES = {
    "shop_db_pool_connections", "shop_db_pool_max_connections", "shop_db_pool_waiters",
    "shop_balancer_endpoints",
    "shop_build_info",
}
HISTOGRAMS = {
    "grpc_server_handling_seconds", "grpc_client_handling_seconds",
    "shop_db_pool_acquire_seconds",
    "http_server_request_duration_seconds",
}
SHOP_METRICS = COUNTERS | GAUGES | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

# Labels each metric carries, besides those Prometheus adds (job, instance,
# namespace, pod, component, release, container, node).
GRPC = {"grpc_type", "grpc_service", "grpc_method"}
LABELS = {
    **{m: GRPC for m in ("grpc_server_started_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total",
                         "grpc_client_started_total", "grpc_client_msg_received_total", "grpc_client_msg_sent_total")},
    "grpc_server_handled_total": GRPC | {"grpc_code"},
    "grpc_client_handled_total": GRPC | {"grpc_code"},
    "grpc_server_handling_seconds": GRPC,
    "grpc_client_handling_seconds": GRPC,
    "shop_db_pool_connections": {"state"},
    "shop_db_pool_max_connections": set(),
    "shop_db_pool_waiters": set(),
    "shop_db_pool_acquire_seconds": set(),
    "shop_balancer_endpoints": {"upstream", "state"},
    "shop_balancer_picks_total": {"upstream", "endpoint"},
    "http_server_requests_total": {"method", "route", "status"},
    "http_server_request_duration_seconds": {"method", "route"},
    "shop_build_info": {"service", "version"},
}
TARGET_LABELS = {"job", "instance", "namespace", "pod", "component", "release", "container", "node"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "atan2", "inf", "nan",
}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def labels_of(metric: str) -> set[str] | None:
    """Labels a shop metric may be selected or grouped by; None for an unknown metric."""
    for h in HISTOGRAMS:
        if metric == h + "_bucket":
            return LABELS[h] | {"le"} | TARGET_LABELS
        if metric in (h + "_sum", h + "_count"):
            return LABELS[h] | TARGET_LABELS
    if metric in LABELS:
        return LABELS[metric] | TARGET_LABELS
    return None


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matcher text) for every `metric{...}` in the expression."""
    out = []
    e = strip_strings(expr)
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}", e):
        out.append((m.group(1), m.group(2)))
    return out


def matcher_labels(matchers: str) -> list[str]:
    return re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers)


def grouping_labels(expr: str) -> list[str]:
    e = strip_strings(expr)
    out = []
    for _, inner in _GROUPING.findall(e):
        out += [x.strip() for x in inner.split(",") if x.strip()]
    return out


def range_selectors(expr: str) -> list[str]:
    """The text inside every [...] of the expression."""
    return re.findall(r"\[([^\[\]]*)\]", strip_strings(expr))


def metric_names(expr: str) -> set[str]:
    e = strip_strings(expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)          # label matchers
    e = re.sub(r"\[[^\[\]]*\]", " ", e)        # ranges, subqueries
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?", " ", e)  # Grafana variables
    e = _GROUPING.sub(" ", e)                  # by (...), on (...), group_left (...)
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    e = re.sub(r"(?<![A-Za-z0-9_:])[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?", " ", e)  # numbers
    names = set()
    for m in _IDENT.finditer(e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # function or aggregation
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names
