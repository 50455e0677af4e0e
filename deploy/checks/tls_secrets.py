#!/usr/bin/env python3
"""The services' TLS Secrets, made the way an admin makes them.

    tls_secrets.py RENDERED.yaml --certs DIR --out SECRETS.yaml [--objects EXISTING.yaml ...]

DIR holds what `shopctl certs --dir DIR --namespace NS productinfo order
storefront` writes (k8s/make-secrets.sh writes the same into its tls/): the CA
(ca.pem) and, per service, <service>.pem and <service>-key.pem. For every
service Deployment of RENDERED.yaml whose container reads TLS_CERT_FILE,
TLS_KEY_FILE and TLS_CA_FILE from a Secret volume, this writes that Secret
with those files under the keys the volume's items name (tls.crt, tls.key,
ca.crt), as the deploy guide's `kubectl create secret generic` does; unless
the Secret is rendered, among EXISTING, or made by a rendered cert-manager
Certificate. SECRETS.yaml is empty when there is nothing to make.

check_config.py and kube_play.py use `secrets_for` to run the services with
certificates from `shopctl certs` in the mounted files.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rendered  # noqa: E402

# The file of DIR each variable's file comes from.
FILES = {"TLS_CERT_FILE": "{svc}.pem", "TLS_KEY_FILE": "{svc}-key.pem", "TLS_CA_FILE": "ca.pem"}


def tls_volumes(docs: list[dict]) -> dict[str, dict]:
    """Per service: the Secret its TLS files come from, and which key of it
    holds each variable's file: {svc: {"secret": NAME, "keys": {VAR: KEY}}}."""
    out: dict[str, dict] = {}
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        svc = d["metadata"]["labels"].get("app.kubernetes.io/component", "")
        pod = rendered.pod_template(d)
        c = pod["spec"]["containers"][0]
        try:
            env = rendered.container_view(docs, pod, c).env
        except rendered.Missing:
            # The TLS Secret itself may be what is missing: read the env without volumes.
            env = rendered.container_view(docs, pod, {**c, "volumeMounts": []}).env
        if "TLS_CERT_FILE" not in env:
            continue
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts") or []}
        secret, keys = None, {}
        for var in FILES:
            directory, _, name = env.get(var, "").rpartition("/")
            m = mounts.get(directory)
            s = (volumes.get(m["name"]) or {}).get("secret") if m else None
            if s is None or secret not in (None, s["secretName"]):
                secret = None
                break
            secret = s["secretName"]
            items = {i["path"]: i["key"] for i in s.get("items") or []}
            keys[var] = items.get(name, name) if items else name
        if secret:
            out[svc] = {"secret": secret, "keys": keys}
    return out


def secrets_for(docs: list[dict], certs: Path) -> list[dict]:
    """A Secret per service that mounts its TLS files from one, with the
    files of `certs` (shopctl's layout)."""
    out = []
    for svc, v in tls_volumes(docs).items():
        data = {key: base64.b64encode((certs / FILES[var].format(svc=svc)).read_bytes()).decode() for var, key in v["keys"].items()}
        out.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": v["secret"], "labels": {"app.kubernetes.io/component": svc}},
            "type": "Opaque",
            "data": data,
        })
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered", type=Path)
    ap.add_argument("--certs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--objects", action="append", default=[])
    args = ap.parse_args()
    docs = rendered.load_file(args.rendered)
    existing = docs + [d for f in args.objects for d in rendered.load_file(f)]
    made = [s for s in secrets_for(docs + existing, args.certs) if rendered.secret(existing, s["metadata"]["name"]) is None]
    args.out.write_text(yaml.safe_dump_all(made, sort_keys=False) if made else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
