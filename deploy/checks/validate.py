#!/usr/bin/env python3
"""Validate rendered manifests against the Kubernetes API schemas, strictly.

    validate.py -k 1.29 -k 1.37 FILE.yaml [FILE.yaml ...]

Every object of every file is checked with kubernetes-validate's strict
OpenAPI schemas of each version (unknown fields, wrong types, missing required
fields, invalid enum values are errors). Unlike the kubernetes-validate command,
an object whose kind/apiVersion has no schema in a version is an error too
(e.g. an API that version does not serve). kubernetes-validate knows no
custom resources: cert-manager's (cert-manager.io/v1 Certificate, Issuer,
ClusterIssuer) are checked against cert-manager-v1.schema.json instead, written
from cert-manager's CRDs, and CloudNativePG's Cluster (postgresql.cnpg.io/v1)
against cnpg-cluster-v1.schema.json, written from its CRD and API reference
(with the few rules of its admission webhook that concern what the chart
fills); both the same for every Kubernetes version. Any other custom resource
is an error. Copies of a valid Certificate and of a valid Cluster, each broken
on purpose, must fail their schema. What it cannot see: anything the API
server checks beyond the schema (immutable fields, admission, name
uniqueness, quota, the rest of a CRD's webhook) and anything about how the
objects behave.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import yaml

CERT_MANAGER = jsonschema.Draft7Validator(json.loads((Path(__file__).resolve().parent / "cert-manager-v1.schema.json").read_text()))
CERT_MANAGER_KINDS = {"Certificate": "Certificate", "Issuer": "Issuer", "ClusterIssuer": "Issuer"}
CNPG = jsonschema.Draft7Validator(json.loads((Path(__file__).resolve().parent / "cnpg-cluster-v1.schema.json").read_text()))


def cert_manager_problem(doc: dict) -> str | None:
    """Why a cert-manager.io object is not valid, or None."""
    definition = CERT_MANAGER_KINDS.get(doc.get("kind"))
    if doc.get("apiVersion") != "cert-manager.io/v1" or definition is None:
        return f"{doc.get('apiVersion')} {doc.get('kind')}: not a kind cert-manager-v1.schema.json knows"
    schema = {"$ref": f"#/definitions/{definition}", "definitions": CERT_MANAGER.schema["definitions"]}
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(doc))
    return None if error is None else f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"


def cert_manager_controls(doc: dict) -> list[str]:
    """Copies of a valid Certificate broken on purpose that the schema passes
    (each must fail: else the schema checks less than it claims)."""
    broken = {
        "without spec.secretName": lambda s: s.pop("secretName"),
        "without spec.issuerRef.name": lambda s: s["issuerRef"].pop("name"),
        "with a misspelt field (spec.dnsName)": lambda s: s.__setitem__("dnsName", ["x"]),
        "with a usage cert-manager does not know (client-auth)": lambda s: s.__setitem__("usages", ["client-auth"]),
        "with isCA as a string": lambda s: s.__setitem__("isCA", "true"),
        "with uris as a string": lambda s: s.__setitem__("uris", "spiffe://shop/ns/shop/sa/order"),
    }
    missed = []
    for what, breaks in broken.items():
        copy = json.loads(json.dumps(doc))
        breaks(copy["spec"])
        if cert_manager_problem(copy) is None:
            missed.append(f"a Certificate {what} passes cert-manager-v1.schema.json")
    return missed


def cnpg_problem(doc: dict) -> str | None:
    """Why a postgresql.cnpg.io object is not a valid Cluster, or None."""
    if doc.get("apiVersion") != "postgresql.cnpg.io/v1" or doc.get("kind") != "Cluster":
        return f"{doc.get('apiVersion')} {doc.get('kind')}: not a kind cnpg-cluster-v1.schema.json knows"
    error = jsonschema.exceptions.best_match(CNPG.iter_errors(doc))
    return None if error is None else f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"


def cnpg_controls(doc: dict) -> tuple[int, list[str]]:
    """How many copies of a valid Cluster are broken on purpose, and those the
    schema passes (each must fail: else the schema checks less than it claims)."""
    broken = {
        "without spec.instances": lambda c: c["spec"].pop("instances"),
        "with no instance": lambda c: c["spec"].__setitem__("instances", 0),
        "with instances as a string": lambda c: c["spec"].__setitem__("instances", "3"),
        "with a misspelt field (spec.instance)": lambda c: c["spec"].__setitem__("instance", 3),
        "with a misspelt field (spec.bootstrap.initdb.ownr)": lambda c: c["spec"]["bootstrap"]["initdb"].__setitem__("ownr", "x"),
        "with a database but no owner": lambda c: c["spec"]["bootstrap"]["initdb"].pop("owner"),
        "with a parameter that is no string": lambda c: c["spec"].setdefault("postgresql", {}).setdefault("parameters", {}).__setitem__("max_connections", 200),
        "with storage.size as a number": lambda c: c["spec"]["storage"].__setitem__("size", 1),
        "with a misspelt field (spec.storage.storageClassName)": lambda c: c["spec"]["storage"].__setitem__("storageClassName", "x"),
        "with an unknown primaryUpdateStrategy": lambda c: c["spec"].__setitem__("primaryUpdateStrategy", "manual"),
        "supervised with one instance": lambda c: c["spec"].update(instances=1, primaryUpdateStrategy="supervised"),
        "with enablePodMonitor as a string": lambda c: c["spec"].setdefault("monitoring", {}).__setitem__("enablePodMonitor", "true"),
        "with a name longer than 50 characters": lambda c: c["metadata"].__setitem__("name", "c" * 51),
        "with the image tag latest": lambda c: c["spec"].__setitem__("imageName", "ghcr.io/cloudnative-pg/postgresql:latest"),
    }
    missed = []
    for what, breaks in broken.items():
        copy = json.loads(json.dumps(doc))
        breaks(copy)
        if cnpg_problem(copy) is None:
            missed.append(f"a Cluster {what} passes cnpg-cluster-v1.schema.json")
    return len(broken), missed


def problem(doc: dict, version: str) -> str | None:
    """Why `doc` is not valid for Kubernetes `version`, or None."""
    if str(doc.get("apiVersion", "")).startswith("cert-manager.io/"):
        return cert_manager_problem(doc)
    if str(doc.get("apiVersion", "")).startswith("postgresql.cnpg.io/"):
        return cnpg_problem(doc)
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
    certificates = [d for d in (json.loads(k) for k, _ in known) if d.get("kind") == "Certificate"]
    controls = ""
    if certificates:
        for missed in cert_manager_controls(certificates[0]):
            print(f"  FAIL control: {missed}")
            errors += 1
        controls = "; 6 Certificates broken on purpose fail cert-manager-v1.schema.json"
    clusters = [d for d in (json.loads(k) for k in {k for k, _ in known}) if d.get("kind") == "Cluster"]
    if clusters:
        # The one that fills most fields, so that every broken copy breaks something there.
        richest = max(clusters, key=lambda d: len(json.dumps(d)))
        count, missed = cnpg_controls(richest)
        for m in missed:
            print(f"  FAIL control: {m}")
            errors += 1
        controls += f"; {count} Clusters broken on purpose fail cnpg-cluster-v1.schema.json"
    total = sum(counted.values())
    if errors:
        print(f"  {errors} schema error(s); {total} object validations passed")
        return 1
    print(f"  ok   {total} object validations ({len(args.files)} files x Kubernetes {', '.join(args.kubernetes_version)}), strict{controls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
