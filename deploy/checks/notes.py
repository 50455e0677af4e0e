#!/usr/bin/env python3
"""Does NOTES.txt tell the truth about the rendered objects?

    notes.py NOTES.txt RENDERED.yaml [--objects EXTRA.yaml ...]

NOTES.txt (rendered for the same values) must contain the port-forward,
grpcurl and token instructions (a login, never a signing key taken out of its
Secret); when the rendered services speak TLS (TLS_CERT_FILE), every grpcurl
command carries -cacert, -cert, -key and -servername and no -plaintext, and
grpc_health_probe -tls; otherwise grpcurl -plaintext. Every object its
commands name (svc/..., deploy/..., `get secret NAME`) must exist in the
rendering, among the objects made beforehand (the admin's, the secrets
Job's) or as the Secret of a rendered cert-manager Certificate, with the
jsonpath key it reads.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rendered  # noqa: E402
import report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("notes", type=Path)
    ap.add_argument("rendered", type=Path)
    ap.add_argument("--objects", action="append", default=[])
    args = ap.parse_args()
    notes = args.notes.read_text()
    docs = rendered.load_file(args.rendered) + [d for f in args.objects for d in rendered.load_file(f)]
    problems = []
    tls = any(d["kind"] == "ConfigMap" and "TLS_CERT_FILE" in (d.get("data") or {}) for d in docs)
    for needle in ("port-forward", "grpc.health.v1.Health/Check", "ecommerce.Storefront/login", "grpc_health_probe"):
        if needle not in notes:
            problems.append(f"NOTES.txt does not mention {needle!r}")
    calls = [call for line in notes.splitlines() for call in re.findall(r"\bgrpcurl -[^|)]*", line)]
    if not calls:
        problems.append("NOTES.txt has no grpcurl command")
    want = ("-cacert ", "-cert ", "-key ", "-servername ") if tls else ("-plaintext",)
    wrong = ("-plaintext",) if tls else ("-cacert", "-servername")
    for call in calls:
        if not all(w in call for w in want) or any(w in call for w in wrong):
            problems.append(f"NOTES.txt: grpcurl {'without its TLS flags' if tls else 'not -plaintext'}: {call.strip()!r}")
    for line in notes.splitlines():
        if "grpc_health_probe" in line and "exec" in line and (" -tls " in line) != tls:
            problems.append(f"NOTES.txt: grpc_health_probe {'without' if tls else 'with'} -tls: {line.strip()!r}")
    # A signing key never leaves the cluster: no reading of a key Secret.
    for line in notes.splitlines():
        if re.search(r"get secret \S*signing-key|private\\?\.pem|shopctl token", line):
            problems.append(f"NOTES.txt asks the operator to handle a signing key: {line.strip()!r}")
    for kind, name in re.findall(r"\b(svc|deploy)/([a-z0-9-]+)", notes):
        k = {"svc": "Service", "deploy": "Deployment"}[kind]
        if rendered.find(docs, k, name) is None:
            problems.append(f"NOTES.txt names {kind}/{name}, which is not rendered")
    for name, key in re.findall(r"get secret ([a-z0-9.-]+) -o jsonpath='\{\.data\.([^}]+)\}'", notes):
        key = key.replace("\\.", ".")
        s = rendered.secret(docs, name)
        if s is None:
            problems.append(f"NOTES.txt reads Secret {name}, which neither the chart, the admin nor the secrets Job makes")
        elif key not in rendered.data_of(s):
            problems.append(f"NOTES.txt reads key {key} of Secret {name}, which has no such key")
    return report.finish(problems, args.rendered.name, "NOTES.txt names only objects and keys that exist")


if __name__ == "__main__":
    sys.exit(main())
