#!/usr/bin/env python3
"""Check the Grafana dashboard offline (standard library only).

    check_dashboard.py DASHBOARD.json [--datasource-uid prometheus] [--emit-rules FILE]

- the file is JSON, a dashboard (uid, title, schemaVersion >= 36, panels);
- panel ids are unique and panels fit the 24-column grid without overlapping;
- every panel and query uses the Prometheus datasource by uid (the one
  grafana/datasources.yaml provisions);
- every query (panel targets and template variables) uses only the shop's
  metric names (promql.py), selects and groups only by labels those metrics
  or the scrape configuration have, takes rates over [$__rate_interval] (or a
  whole-range [$__range]), and uses histogram_quantile only on _bucket series
  grouped by le;
- every $variable a query uses is defined in templating.
With --emit-rules, writes each query (variables replaced by sample values) as
a recording rule, so that `promtool check rules FILE` checks its syntax; with
--emit-tests, a `promtool test rules` file that evaluates the two least
obvious queries on synthetic series: the round-robin share per endpoint
(two replicas get half each) and the error ratio (0, not missing, for a
method without failures).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import promql  # noqa: E402

BUILTIN_VARS = {"__rate_interval", "__range", "__interval", "__name", "__all"}
SAMPLE = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def queries(dash: dict):
    """(where, expr, datasource) of every query: panel targets and template variables."""
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels") or [])

    for p in walk(dash.get("panels") or []):
        for t in p.get("targets") or []:
            yield f'panel {p.get("id")} "{p.get("title")}" target {t.get("refId")}', t.get("expr", ""), t.get("datasource"), p
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            yield f'variable ${v.get("name")}', q, v.get("datasource"), None


def semantic_tests(dash: dict, rules_file: str) -> dict:
    panels = {p.get("title"): p for p in dash.get("panels") or []}

    def expr(title):
        e = panels[title]["targets"][0]["expr"]
        for k, v in {"$__rate_interval": "2m", "$__range": "10m", "$namespace": ".*",
                     "$component": ".*", "$grpc_type": "unary"}.items():
            e = e.replace(k, v)
        return e

    picks = 'shop_balancer_picks_total{namespace="shop",component="order",pod="o1",upstream="productinfo",endpoint="%s"}'
    handled = ('grpc_server_handled_total{namespace="shop",component="productinfo",pod="p1",grpc_type="unary",'
               'grpc_service="ecommerce.ProductInfo",grpc_method="%s",grpc_code="%s"}')
    method = '{component="productinfo",grpc_service="ecommerce.ProductInfo",grpc_method="%s"}'
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": picks % "10.0.0.1:50051", "values": "0+30x20"},
            {"series": picks % "10.0.0.2:50051", "values": "0+30x20"},
            {"series": handled % ("getProduct", "OK"), "values": "0+60x20"},
            {"series": handled % ("listProducts", "OK"), "values": "0+30x20"},
            {"series": handled % ("listProducts", "NotFound"), "values": "0+30x20"},
        ],
        "promql_expr_test": [
            {"expr": expr("Share of picks per endpoint (time range)"), "eval_time": "15m", "exp_samples": [
                {"labels": '{upstream="productinfo",endpoint="10.0.0.1:50051"}', "value": 0.5},
                {"labels": '{upstream="productinfo",endpoint="10.0.0.2:50051"}', "value": 0.5}]},
            {"expr": expr("Error ratio by method"), "eval_time": "15m", "exp_samples": [
                {"labels": method % "getProduct", "value": 0},
                {"labels": method % "listProducts", "value": 0.5}]},
        ],
    }]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dashboard")
    ap.add_argument("--datasource-uid", default="prometheus")
    ap.add_argument("--emit-rules")
    ap.add_argument("--emit-tests", help="promtool test file to write; it reads the --emit-rules file")
    args = ap.parse_args()

    errors: list[str] = []
    try:
        dash = json.loads(Path(args.dashboard).read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"  FAIL {args.dashboard}: {e}")
        return 1

    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in dash:
            errors.append(f"dashboard has no {key}")
    if not isinstance(dash.get("schemaVersion"), int) or dash.get("schemaVersion", 0) < 36:
        errors.append(f"schemaVersion {dash.get('schemaVersion')!r}: expected an integer >= 36")

    # Panels: unique ids, inside the grid, no overlaps.
    seen_ids, cells = set(), {}
    for p in dash.get("panels") or []:
        pid = p.get("id")
        if pid in seen_ids:
            errors.append(f"panel id {pid} used twice")
        seen_ids.add(pid)
        g = p.get("gridPos") or {}
        x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
        if not all(isinstance(n, int) for n in (x, y, w, h)) or w < 1 or h < 1 or x < 0 or x + w > 24:
            errors.append(f"panel {pid} \"{p.get('title')}\": bad gridPos {g}")
            continue
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                if (cx, cy) in cells:
                    errors.append(f"panel {pid} overlaps panel {cells[(cx, cy)]} at x={cx} y={cy}")
                    break
                cells[(cx, cy)] = pid
            else:
                continue
            break
        if p.get("type") != "row":
            ds = p.get("datasource") or {}
            if ds.get("uid") != args.datasource_uid:
                errors.append(f"panel {pid} \"{p.get('title')}\": datasource {ds} is not uid {args.datasource_uid!r}")
            if not p.get("targets"):
                errors.append(f"panel {pid} \"{p.get('title')}\": no queries")

    defined = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []}
    rules, n = [], 0
    for where, expr, ds, panel in queries(dash):
        n += 1
        if not expr.strip():
            errors.append(f"{where}: empty query")
            continue
        if (ds or {}).get("uid") != args.datasource_uid:
            errors.append(f"{where}: datasource {ds} is not uid {args.datasource_uid!r}")
        for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
            if var not in defined and var not in BUILTIN_VARS:
                errors.append(f"{where}: uses ${var}, which templating does not define")
        body = expr
        m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", expr, re.S)
        if m:
            body = m.group(1)
            label = m.group(2)
            for metric in promql.metric_names(body):
                labels = promql.labels_of(metric)
                if labels is not None and label not in labels:
                    errors.append(f"{where}: {metric} has no label {label!r}")
        names = promql.metric_names(body)
        if not names:
            errors.append(f"{where}: no metric in {expr!r}")
        for name in sorted(names - promql.SHOP_METRICS):
            errors.append(f"{where}: metric {name!r} is not one the shop exports")
        known = set().union(*[promql.labels_of(x) or set() for x in names]) if names else set()
        for metric, matchers in promql.selectors(body):
            labels = promql.labels_of(metric)
            if labels is None:
                continue
            for label in promql.matcher_labels(matchers):
                if label not in labels:
                    errors.append(f"{where}: {metric} is selected by {label!r}, a label it does not have")
        for label in promql.grouping_labels(body):
            if label not in known:
                errors.append(f"{where}: groups by {label!r}, which none of {sorted(names)} has")
        for rng in promql.range_selectors(body):
            if rng not in ("$__rate_interval", "$__range"):
                errors.append(f"{where}: range [{rng}]: use [$__rate_interval] (or [$__range] for a whole-range total)")
        for hq in re.finditer(r"histogram_quantile\(", body):
            tail = body[hq.end():]
            if "_bucket" not in tail or not re.search(r"\bby\s*\([^)]*\ble\b", tail):
                errors.append(f"{where}: histogram_quantile needs a _bucket series aggregated by le")
        if panel is not None and panel.get("type") == "timeseries" and "$__range" in body:
            errors.append(f"{where}: [$__range] in a time series (use $__rate_interval)")
        sample = body
        for k, v in SAMPLE.items():
            sample = sample.replace(k, v)
        sample = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", sample)
        rules.append(sample)

    if args.emit_rules:
        lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
        for i, r in enumerate(rules):
            lines.append(f"      - record: dashboard:query_{i}")
            lines.append(f"        expr: {json.dumps(r)}")
        Path(args.emit_rules).write_text("\n".join(lines) + "\n")

    if args.emit_tests:
        try:
            tests = semantic_tests(dash, str(Path(args.emit_rules or "rules.yaml").resolve()))
            Path(args.emit_tests).write_text(json.dumps(tests, indent=1) + "\n")  # JSON is YAML
        except (KeyError, IndexError) as e:
            errors.append(f"--emit-tests: panel or query not found: {e}")

    for e in errors:
        print(f"  FAIL {args.dashboard}: {e}")
    if errors:
        return 1
    panels = sum(1 for p in dash["panels"] if p.get("type") != "row")
    print(f"  ok   dashboard: {panels} panels, {n} queries, only shop metrics and labels, "
          f"rates over $__rate_interval, datasource uid {args.datasource_uid!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
