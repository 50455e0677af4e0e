#!/usr/bin/env python3
"""Validate rendered manifests against the Kubernetes API schemas, strictly.

    validate.py -k 1.29 -k 1.37 FILE.yaml [FILE.yaml ...]

Every object of every file is checked with kubernetes-validate's strict
OpenAPI schemas of each version (unknown fields, wrong types, missing required
fields, invalid enum values are errors). Unlike the kubernetes-validate command,
an object whose kind/apiVersion has no schema in a version is an error too
(e.g. an API that version does not serve). What it cannot see: anything the
API server checks beyond the schema (immutable fields, admission, name
uniqueness, quota, CRDs) and anything about how the objects behave.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import kubernetes_validate.utils as kv
import yaml


def problem(doc: dict, version: str) -> str | None:
    """Why `doc` is not valid for Kubernetes `version`, or None."""
    try:
        kv.validate(doc, version, strict=True)
        return None
    except kv.ValidationError as e:
        return f"{'.'.join(str(p) for p in e.path)}: {e.message}"
    except (kv.SchemaNotFoundError, kv.VersionNotSupportedError, kv.InvalidSchemaError) as e:
        return str(e.message if hasattr(e, "message") else e)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", "--kubernetes-version", action="append", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    errors = 0
    counted: Counter = Counter()
    # Most objects are the same in several renderings: each is validated once per version.
    known: dict[tuple[str, str], str | None] = {}
    for f in args.files:
        docs = [d for d in yaml.safe_load_all(Path(f).read_text()) if d]
        if not docs:
            print(f"  FAIL {f}: no objects")
            errors += 1
        for d in docs:
            for version in args.kubernetes_version:
                key = (json.dumps(d, sort_keys=True), version)
                if key not in known:
                    known[key] = problem(d, version)
                if known[key] is None:
                    counted[version] += 1
                else:
                    print(f"  FAIL {Path(f).name}: {d.get('kind')}/{(d.get('metadata') or {}).get('name')} on {version}: {known[key]}")
                    errors += 1
    total = sum(counted.values())
    if errors:
        print(f"  {errors} schema error(s); {total} object validations passed")
        return 1
    print(f"  ok   {total} object validations ({len(args.files)} files x Kubernetes {', '.join(args.kubernetes_version)}), strict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
