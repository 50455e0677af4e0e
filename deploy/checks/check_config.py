#!/usr/bin/env python3
"""Do the real binaries accept the configuration the manifests give them?

    check_config.py --bin-dir target/debug [--tls-certs DIR] RENDERED.yaml [--objects EXTRA.yaml] ...

For every service Deployment in the rendered manifests, take its container's
command and args, the environment the kubelet would give it (env, envFrom,
ConfigMap and Secret keys, fieldRefs, $(VAR) expansion) and the files its
ConfigMap and Secret volumes would mount (keys, certificates, passwords),
write those files into a temporary directory, and run

    <bin-dir>/<service> check-config      (instead of `serve`, same flags)

with exactly that environment and nothing else (env -i). The only change: a
path under a volume's mountPath becomes the same path under the temporary
directory. check-config parses every flag and variable, reads every key file
and certificate and validates the database URL, contacting nothing; it must
exit 0. The fault flag file (FAULTS_FILE, the ConfigMap <release>-faults
mounted as a directory) must be among those files: check-config reads it and
refuses a malformed one, but takes a missing one for no flags. With
--tls-certs, each service's TLS Secret (tls.crt, tls.key, ca.crt, wherever
its volume mounts them) holds what `shopctl certs --dir DIR` wrote for that
service: real certificates of the services' CA, whether the rendering
expects the admin's Secret or cert-manager's. A CloudNativePG Cluster's
Secrets, which its operator makes, are there as rendered.cnpg_secrets makes
them: the -app Secret's password file and, in the -ca Secret, a real CA
certificate (with --tls-certs, the services' CA stands in for the Cluster's)
that DATABASE_URL's sslrootcert names.

Then, so that this check can fail, each service is run again with its
environment broken on purpose (a trusted issuer's key file missing, a key
file that is not a key, the password file missing, a database URL that is not
a URL, a read replica's URL that is not one or a lag that is no duration, a
duration that is not one, a fault flag of the service with a rate
past 1; with TLS: the certificate or CA file missing, a key file that is not
a key, a certificate without its key, a client-auth mode or reload interval
the services do not know, a health listener address that is not one), and
each of those must exit non-zero.

What it cannot prove: that the database, DNS names and peers exist and answer
(check-config contacts nothing), or that the `migrate` Job works (the podman
kube play test runs it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rendered  # noqa: E402
import tls_secrets  # noqa: E402

SERVICES = ("productinfo", "order", "storefront")


def run(binary: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=60)


def breakages(svc: str, env: dict[str, str], root: Path) -> list[tuple[str, dict[str, str]]]:
    """Environments that must be refused, each with what is wrong."""
    out = []
    if "FAULTS_FILE" in env:
        # A flag of this service (a service ignores the others' flags) with a rate past 1.
        garbage = root / "bad-flags.json"
        garbage.write_text(json.dumps({"flags": {f"{svc}.*.error": {"defaultVariant": "on", "variants": {"on": {"rate": 2, "code": "UNAVAILABLE"}}}}}))
        out.append(("a fault flag's rate is past 1", {**env, "FAULTS_FILE": str(garbage)}))
    issuers = env.get("TRUSTED_ISSUERS", "")
    if "=" in issuers:
        first = issuers.split(",")[0].split("=", 1)[1]
        out.append(("a trusted issuer's key file is missing", {**env, "TRUSTED_ISSUERS": issuers.replace(first, first + ".missing")}))
        garbage = root / "not-a-key.pem"
        garbage.write_text("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
        out.append(("a trusted issuer's key file is not a key", {**env, "TRUSTED_ISSUERS": issuers.replace(first, str(garbage))}))
    if "SIGNING_KEY_FILE" in env:
        garbage = root / "not-a-private-key.pem"
        garbage.write_text("hello\n")
        out.append(("the signing key file is not a key", {**env, "SIGNING_KEY_FILE": str(garbage)}))
    if "DATABASE_PASSWORD_FILE" in env:
        out.append(("the database password file is missing", {**env, "DATABASE_PASSWORD_FILE": env["DATABASE_PASSWORD_FILE"] + ".missing"}))
    out.append(("the database URL is not a URL", {**env, "DATABASE_URL": "not a url"}))
    if "DATABASE_READ_URL" in env:
        out.append(("the read replica's URL is not a URL", {**env, "DATABASE_READ_URL": "not a url"}))
        out.append(("the read replica's maximum lag is not a duration", {**env, "DATABASE_READ_MAX_LAG": "a while"}))
    out.append(("the shutdown grace is not a duration", {**env, "SHUTDOWN_GRACE": "soon"}))
    if "TLS_CERT_FILE" in env:
        garbage = root / "not-a-tls-key.pem"
        garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        without_key = {k: v for k, v in env.items() if k != "TLS_KEY_FILE"}
        out += [
            ("the TLS certificate file is missing", {**env, "TLS_CERT_FILE": env["TLS_CERT_FILE"] + ".missing"}),
            ("the TLS CA file is missing", {**env, "TLS_CA_FILE": env["TLS_CA_FILE"] + ".missing"}),
            ("the TLS key file is not a key", {**env, "TLS_KEY_FILE": str(garbage)}),
            ("a TLS certificate without its key", without_key),
            ("TLS_CLIENT_AUTH is neither require nor optional", {**env, "TLS_CLIENT_AUTH": "sometimes"}),
            ("the TLS reload interval is not a duration", {**env, "TLS_RELOAD_INTERVAL": "often"}),
        ]
    if env.get("HEALTH_LISTEN_ADDR", "off") != "off":
        out.append(("the health listener's address is not one", {**env, "HEALTH_LISTEN_ADDR": "pod-ip:50052"}))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True, type=Path)
    ap.add_argument("--objects", action="append", default=[], help="objects the admin creates beforehand")
    ap.add_argument("--services", default=",".join(SERVICES), help="comma-separated services to check")
    ap.add_argument("--no-negative", action="store_true", help="skip the deliberately broken runs")
    ap.add_argument("--tls-certs", type=Path, help="what `shopctl certs --dir DIR` wrote: the TLS Secrets' content")
    ap.add_argument("rendered", nargs="+", type=Path)
    args = ap.parse_args()
    services = [s for s in args.services.split(",") if s]
    extra = [d for f in args.objects for d in rendered.load_file(f)]

    failures = 0
    passed = 0
    for path in args.rendered:
        docs = rendered.load_file(path) + extra
        if args.tls_certs:
            # Found before any other Secret of the same name: the certificates shopctl made.
            docs = tls_secrets.secrets_for(docs, args.tls_certs) + docs
            docs = rendered.cnpg_secrets(docs, (args.tls_certs / "ca.pem").read_bytes()) + docs
        deployments = {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in docs
            if d["kind"] == "Deployment"
        }
        for svc in services:
            what = f"{path.name}: {svc}"
            binary = args.bin_dir / svc
            if not binary.exists():
                print(f"  FAIL {what}: {binary} is not built (make build)")
                failures += 1
                continue
            doc = deployments.get(svc)
            if doc is None:
                print(f"  FAIL {what}: no Deployment of {svc} in the manifests")
                failures += 1
                continue
            with tempfile.TemporaryDirectory(prefix=f"check-config-{svc}-") as tmp:
                root = Path(tmp)
                try:
                    pod = rendered.pod_template(doc)
                    argv, env = rendered.materialise(docs, pod, pod["spec"]["containers"][0], root)
                except rendered.Missing as e:
                    print(f"  FAIL {what}: {e}")
                    failures += 1
                    continue
                if argv[:1] != [f"/usr/local/bin/{svc}"] or argv[1:2] != ["serve"]:
                    print(f"  FAIL {what}: container runs {argv}, expected /usr/local/bin/{svc} serve ...")
                    failures += 1
                    continue
                # check-config takes a missing fault flag file for no flags:
                # it must be there for the run to check what the chart mounts.
                if "FAULTS_FILE" in env and not Path(env["FAULTS_FILE"]).is_file():
                    print(f"  FAIL {what}: FAULTS_FILE {env['FAULTS_FILE']} is no file of a mounted volume")
                    failures += 1
                    continue
                args_ = ["check-config", *argv[2:]]
                r = run(binary, args_, env)
                if r.returncode != 0:
                    print(f"  FAIL {what}: check-config exit {r.returncode}: {(r.stderr or r.stdout).strip()}")
                    print("       env: " + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
                    failures += 1
                    continue
                passed += 1
                print(f"  ok   {what}: check-config accepts the rendered command and {len(env)} variables")
                if args.no_negative:
                    continue
                for why, broken in breakages(svc, env, root):
                    r = run(binary, args_, broken)
                    if r.returncode == 0:
                        print(f"  FAIL {what}: check-config accepted a broken configuration: {why}")
                        failures += 1
                    else:
                        passed += 1
                        msg = (r.stderr or r.stdout).strip().splitlines()
                        print(f"  ok   {what}: refused ({why}): {msg[-1] if msg else ''}")
    print(f"check-config: {passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
