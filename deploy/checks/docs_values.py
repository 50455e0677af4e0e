#!/usr/bin/env python3
"""Is every value of the chart documented, and every documented value real?

    docs_values.py helm/shop/values.yaml deploy/README.md

The values table of the deploy guide (section "### Values") has one row per value, its first cell the
value's path in backticks: | `ingress.tls.secretName` | ... |. A row may stand
for a whole object (`podSecurityContext`), and `<service>.x` stands for
productinfo.x, order.x and storefront.x. Fails when a value has no row, or a
row names a value the chart does not have.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

SERVICES = ("productinfo", "order", "storefront")


def leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def all_paths(node, prefix=""):
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from all_paths(v, f"{prefix}.{k}" if prefix else k)


def main() -> int:
    values = yaml.safe_load(Path(sys.argv[1]).read_text())
    doc = Path(sys.argv[2]).read_text()
    section = re.search(r"^### Values\n(.*?)(?=^### |\Z)", doc, re.M | re.S)
    if not section:
        print(f"  FAIL {sys.argv[2]} has no '### Values' section")
        return 1
    doc = section.group(1)
    rows = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", doc, re.M))
    expanded = set()
    for r in rows:
        if r.startswith("<service>."):
            expanded |= {r.replace("<service>", s, 1) for s in SERVICES}
        else:
            expanded.add(r)

    problems = []
    for leaf in leaves(values):
        parts = leaf.split(".")
        if not any(".".join(parts[:i]) in expanded for i in range(1, len(parts) + 1)):
            problems.append(f"value `{leaf}` has no row in the values table")
    known = set(all_paths(values))
    for r in sorted(expanded):
        if r not in known:
            problems.append(f"the values table documents `{r}`, which values.yaml does not have")
    return report.finish(problems, "", f"all {sum(1 for _ in leaves(values))} values documented in {sys.argv[2]} ({len(rows)} rows)")


if __name__ == "__main__":
    sys.exit(main())
