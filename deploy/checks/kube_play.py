#!/usr/bin/env python3
"""Run the rendered chart with `podman kube play`: PostgreSQL, migrations, services.

    kube_play.py RENDERED.yaml [--objects MADE.yaml ...] --shopctl target/debug/shopctl [--services productinfo,order,storefront]

RENDERED.yaml is `helm template` of helm/shop with values/kube-play.yaml (the
local test images of podman-images.sh; TLS on, as by default); MADE.yaml the
Secrets and ConfigMap its secrets Job made (secrets_job.py run: podman has no
API server for the Job, so its script ran on this machine), and the services'
TLS Secrets as an admin makes them (tls_secrets.py, from `shopctl certs`).
Then, on a podman network of its own:

 1. each in-cluster PostgreSQL (the StatefulSet's pod) starts, runs the chart's
    init script (the service's own role and database) and passes its exec
    readiness probe;
 2. each migration Job's pod runs `<service> migrate` against it and exits 0;
 3. the services start in dependency order; for each, the exact exec commands
    of its startupProbe, readinessProbe and livenessProbe (grpc_health_probe:
    "liveness" and the service's own name, over TLS with the pod's own
    certificate) are run in its container until they pass, and `podman
    healthcheck run` (podman's form of the liveness probe) reports healthy;
    it runs as its numeric user on a read-only root filesystem and serves
    /metrics on METRICS_ADDR;
 4. a smoke test through the real wiring (and, with the storefront, GET / of
    its web shop, the admin's login with the rendered password, and a
    customer's register, cart and checkout through the storefront): an admin
    token minted with shopctl
    from the storefront key in its Secret adds a product on
    productinfo, a customer token places an order on order, which reserves the
    stock on productinfo over the headless Service name with its own service
    token (keys, certificates, TRUSTED_ISSUERS and *_TARGET all as rendered);
    every call is grpcurl over mutual TLS (-cacert, -cert, -key, -servername
    with the service's logical name), as in the cluster; with TLS on, the gRPC
    ports refuse plaintext, productinfo refuses a client without a
    certificate and a client that verifies another name, and the storefront
    (client auth optional) takes a client without one;
 5. with productinfo's database stopped, its readiness probe fails while its
    liveness probe still passes (a database outage never restarts pods);
 6. SIGTERM: the service stops within terminationGracePeriodSeconds, exit 0.

What podman cannot do, so this test changes or leaves out (printed as it runs):
Secrets become ConfigMaps of the same content (podman 4.3 mounts kube Secret
volumes still base64-encoded), a StatefulSet and a Job run as a Pod, emptyDirs
and PersistentVolumeClaims become host directories with the modes the kubelet
gives them (podman applies neither those nor fsGroup), Service DNS names become hostAliases
pointing at the pods' addresses, the metadata.namespace fieldRef becomes
the namespace's name; containerPorts are dropped (podman would
publish them on the host); Services, NetworkPolicies, PDBs, HPAs and
ServiceAccounts are not played (podman has no such thing), and fsGroup is not
applied. The images are test images (Debian base, debug binaries, a
grpc_health_probe stand-in on grpcurl), not the production ones.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rendered  # noqa: E402

NETWORK = "shop-kube-play"
ORDER = ("productinfo", "order", "storefront")
HEALTH = {"productinfo": "ecommerce.ProductInfo", "order": "ecommerce.OrderManagement", "storefront": "ecommerce.Storefront"}

passed = 0
failed = 0


def say(msg: str) -> None:
    print(msg, flush=True)


def ok(msg: str) -> None:
    global passed
    passed += 1
    say(f"  ok   {msg}")


def bad(msg: str) -> None:
    global failed
    failed += 1
    say(f"  FAIL {msg}")


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


# ------------------------------------------------------------------ transform


def secrets_as_configmaps(docs: list[dict]) -> list[dict]:
    out = []
    for d in docs:
        if d["kind"] == "Secret":
            data = {k: v.decode() for k, v in rendered.data_of(d).items()}
            out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": d["metadata"]["name"]}, "data": data})
        elif d["kind"] == "ConfigMap":
            out.append(d)
    return out


def podman_pod_spec(spec: dict) -> dict:
    """Secret references -> ConfigMap references; no host ports."""
    spec = copy.deepcopy(spec)
    for v in spec.get("volumes") or []:
        if "secret" in v:
            s = v.pop("secret")
            v["configMap"] = {k: val for k, val in {"name": s["secretName"], "items": s.get("items"), "defaultMode": s.get("defaultMode")}.items() if val is not None}
    for c in spec["containers"]:
        # podman 4.3 publishes every containerPort on the host; in Kubernetes
        # they are informational, and nothing here reaches the pods from outside.
        c.pop("ports", None)
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                vf["configMapKeyRef"] = vf.pop("secretKeyRef")
            # podman knows no namespaces; the kubelet would give the pod's.
            if (vf.get("fieldRef") or {}).get("fieldPath") == "metadata.namespace":
                e.pop("valueFrom")
                e["value"] = "shop"
    return spec


def as_pod(doc: dict, host_aliases: dict[str, str], workdir: Path) -> dict:
    """A Deployment/StatefulSet/Job's pod as a Pod named after the object.

    emptyDir and PersistentVolumeClaim volumes become host directories made the
    way the kubelet makes them (podman gives neither the kubelet's modes nor
    fsGroup): an emptyDir is a 0777 directory, a claim's root belongs to the
    pod's fsGroup with mode 2770.
    """
    template = rendered.pod_template(doc)
    spec = podman_pod_spec(template["spec"])
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    volumes = []
    for v in spec.get("volumes") or []:
        if "persistentVolumeClaim" in v or "emptyDir" in v:
            path = workdir / "volumes" / doc["metadata"]["name"] / v["name"]
            path.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in v:
                path.chmod(0o777)
            else:
                os.chown(path, 0, fs_group if fs_group is not None else 0)
                path.chmod(0o2770)
            v = {"name": v["name"], "hostPath": {"path": str(path), "type": "Directory"}}
        volumes.append(v)
    spec["volumes"] = volumes
    if doc["kind"] == "Job":
        spec["restartPolicy"] = "Never"
    by_ip: dict[str, list[str]] = {}
    for name, ip in host_aliases.items():
        by_ip.setdefault(ip, []).append(name)
    if by_ip:
        spec["hostAliases"] = [{"ip": ip, "hostnames": sorted(names)} for ip, names in by_ip.items()]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": doc["metadata"]["name"], "labels": template["metadata"].get("labels") or {}},
        "spec": spec,
    }


# ------------------------------------------------------------------ podman helpers


def play(workdir: Path, configmaps: list[dict], pod: dict) -> str:
    path = workdir / f"{pod['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump_all(configmaps + [pod], sort_keys=False))
    r = podman("kube", "play", "--network", NETWORK, "--log-driver", "k8s-file", str(path), check=False)
    if r.returncode != 0:
        raise RuntimeError(f"kube play {pod['metadata']['name']}: {r.stderr.strip()}")
    return pod["metadata"]["name"]


def pod_ip(pod: str) -> str:
    infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
    nets = json.loads(podman("inspect", infra, "--format", "{{json .NetworkSettings.Networks}}").stdout)
    return nets[NETWORK]["IPAddress"]


def ctr(pod: str, container: str) -> str:
    return f"{pod}-{container}"


def exec_(container: str, cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return podman("exec", container, *cmd, check=False, timeout=timeout)


def wait_probe(container: str, cmd: list[str], seconds: float, want_ok: bool = True) -> tuple[bool, str]:
    deadline = time.monotonic() + seconds
    last = ""
    while True:
        r = exec_(container, cmd)
        last = (r.stdout + r.stderr).strip()
        if (r.returncode == 0) == want_ok:
            return True, last
        if time.monotonic() > deadline:
            return False, last
        time.sleep(1)


def logs(container: str, n: int = 15) -> str:
    r = podman("logs", "--tail", str(n), container, check=False)
    return (r.stdout + r.stderr).strip()


def tls_flags(docs: list[dict], fullname: str, caller: str, server: str, client_cert: bool = True) -> list[str]:
    """grpcurl's flags for `caller`'s container calling the service `server`:
    with TLS, the caller's own files (its TLS Secret, as mounted) and the
    name callers verify, the server's logical name; else -plaintext."""
    env = rendered.find(docs, "ConfigMap", f"{fullname}-{caller}")["data"]
    if "TLS_CERT_FILE" not in env:
        return ["-plaintext"]
    flags = ["-cacert", env["TLS_CA_FILE"], "-servername", server]
    return flags + (["-cert", env["TLS_CERT_FILE"], "-key", env["TLS_KEY_FILE"]] if client_cert else [])


def grpcurl(container: str, flags: list[str], args: list[str]) -> subprocess.CompletedProcess:
    return exec_(container, ["grpcurl", *flags, *args])


# ------------------------------------------------------------------ test


def load(args: argparse.Namespace) -> list[dict]:
    """The rendered objects, then those that exist beforehand."""
    return rendered.load_file(args.rendered) + [d for f in args.objects for d in rendered.load_file(f)]


def run(args: argparse.Namespace, workdir: Path, played: list[str]) -> None:
    docs = load(args)
    services = [s for s in ORDER if s in args.services.split(",")]
    fullname = args.fullname
    configmaps = secrets_as_configmaps(docs)
    say("  note podman runs: Secrets as ConfigMaps, StatefulSet/Job pods as Pods, emptyDirs/PVCs as host directories, Service names as hostAliases;")
    say("       not played: Services, NetworkPolicies, PDBs, HPAs, ServiceAccounts (see deploy/README.md)")
    aliases: dict[str, str] = {}

    # 1. databases
    for svc in services:
        sts = rendered.find(docs, "StatefulSet", f"{fullname}-{svc}-postgresql")
        if sts is None:
            bad(f"{svc}: no in-cluster PostgreSQL in the manifests (kube-play.yaml expects the embedded database mode)")
            continue
        name = play(workdir, configmaps, as_pod(sts, {}, workdir))
        played.append(name)
        probe = rendered.pod_template(sts)["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
        good, out = wait_probe(ctr(name, "postgresql"), probe, 90)
        if not good:
            bad(f"{name}: readiness probe {probe} never passed: {out}\n{logs(ctr(name, 'postgresql'))}")
            raise SystemExit(1)
        ip = pod_ip(name)
        aliases[name] = ip
        env = {e["name"]: e.get("value") for e in rendered.pod_template(sts)["spec"]["containers"][0]["env"]}
        role, db = env["SHOP_DB_USER"], env["SHOP_DB_NAME"]
        r = exec_(ctr(name, "postgresql"), ["psql", "-h", "/var/run/postgresql", "-U", "postgres", "-tAc",
                  f"SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, d.datname FROM pg_roles r "
                  f"JOIN pg_database d ON d.datdba = r.oid WHERE r.rolname = '{role}'"])
        if r.stdout.strip() != f"f|f|f|{db}":
            bad(f"{name}: want role {role} (no superuser, createdb, createrole) owning exactly {db}, got {r.stdout.strip()!r} {r.stderr.strip()}")
            continue
        ok(f"{name}: PostgreSQL up at {ip}, probe `{' '.join(probe)}` passes; the init script made role {role}, "
           f"owner of {db} only, no superuser/createdb/createrole")

    # 2. migrations
    for svc in services:
        jobs = [d for d in docs if d["kind"] == "Job" and d["metadata"]["labels"].get("app.kubernetes.io/component") == f"{svc}-migrate"]
        if len(jobs) != 1:
            bad(f"{svc}: expected one migration Job, found {len(jobs)}")
            continue
        name = play(workdir, configmaps, as_pod(jobs[0], aliases, workdir))
        played.append(name)
        c = ctr(name, "migrate")
        code = podman("wait", c, timeout=180).stdout.strip()
        if code != "0":
            bad(f"{name}: `{svc} migrate` exited {code}:\n{logs(c)}")
            raise SystemExit(1)
        ok(f"{name}: `{svc} migrate` applied the migrations (exit 0)")

    # 3. services and their probes
    containers = {}
    for svc in services:
        dep = rendered.find(docs, "Deployment", f"{fullname}-{svc}")
        name = play(workdir, configmaps, as_pod(dep, aliases, workdir))
        played.append(name)
        c = ctr(name, svc)
        containers[svc] = c
        aliases[f"{fullname}-{svc}"] = aliases[f"{fullname}-{svc}-headless"] = pod_ip(name)
        spec = rendered.pod_template(dep)["spec"]["containers"][0]
        for kind in ("startup", "readiness", "liveness"):
            probe = spec[f"{kind}Probe"]
            cmd = probe["exec"]["command"]
            budget = probe["periodSeconds"] * probe["failureThreshold"] if kind == "startup" else 60
            good, out = wait_probe(c, cmd, budget)
            if good:
                ok(f"{svc}: {kind} probe `{' '.join(cmd[1:])}` passes: {out}")
            else:
                bad(f"{svc}: {kind} probe `{' '.join(cmd)}` failed: {out}\n{logs(c)}")
        # The pod runs as the numeric user with a read-only root, and serves metrics.
        r = exec_(c, ["sh", "-c", "id -u; touch /write-test 2>&1 || true"])
        lines = r.stdout.strip().splitlines()
        pod_sc = rendered.pod_template(dep)["spec"].get("securityContext") or {}
        uid = (spec.get("securityContext") or {}).get("runAsUser", pod_sc.get("runAsUser"))
        if lines and lines[0] == str(uid) and "Read-only file system" in r.stdout:
            ok(f"{svc}: runs as user {lines[0]} on a read-only root filesystem")
        else:
            bad(f"{svc}: user / read-only root: {r.stdout}{r.stderr}")
        metrics = rendered.find(docs, "ConfigMap", f"{fullname}-{svc}")["data"]["METRICS_ADDR"].rsplit(":", 1)[1]
        r = exec_(c, ["bash", "-c", f'exec 3<>/dev/tcp/127.0.0.1/{metrics}; printf "GET /metrics HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'])
        if r.returncode == 0 and " 200" in r.stdout.splitlines()[0] and "# TYPE" in r.stdout:
            ok(f"{svc}: serves Prometheus metrics on METRICS_ADDR port {metrics}")
        else:
            bad(f"{svc}: GET /metrics on port {metrics}: {r.stdout[:200]}{r.stderr}")
        r = podman("healthcheck", "run", c, check=False)
        if r.returncode == 0:
            ok(f"{svc}: `podman healthcheck run` (the liveness probe as podman maps it) reports healthy")
        else:
            bad(f"{svc}: podman healthcheck run: exit {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")

    # 4. smoke test through the real wiring
    if {"productinfo", "order"} <= set(services) and failed == 0:
        smoke(docs, fullname, containers, workdir, args.shopctl)

    if "storefront" in services and failed == 0:
        # No curl in the test image: one HTTP/1.0 request with bash's /dev/tcp.
        http = rendered.find(docs, "ConfigMap", f"{fullname}-storefront")["data"]["HTTP_LISTEN_ADDR"].rsplit(":", 1)[1]
        r = exec_(containers["storefront"], ["bash", "-c", f'exec 3<>/dev/tcp/127.0.0.1/{http}; printf "GET / HTTP/1.0\\r\\nHost: shop\\r\\n\\r\\n" >&3; head -1 <&3'])
        if r.returncode == 0 and " 200" in r.stdout:
            ok(f"storefront: the web shop answers GET / on port {http}: {r.stdout.strip()}")
        else:
            bad(f"storefront: GET / on port {http}: {r.stdout}{r.stderr}")

    # 5. readiness follows the database, liveness does not
    if "productinfo" in services and failed == 0:
        db = f"{fullname}-productinfo-postgresql"
        podman("stop", "-t", "10", ctr(db, "postgresql"))
        dep = rendered.find(docs, "Deployment", f"{fullname}-productinfo")
        spec = rendered.pod_template(dep)["spec"]["containers"][0]
        c = containers["productinfo"]
        went, out = wait_probe(c, spec["readinessProbe"]["exec"]["command"], 30, want_ok=False)
        alive = exec_(c, spec["livenessProbe"]["exec"]["command"])
        if went and alive.returncode == 0:
            ok("productinfo, database stopped: readiness probe fails (NOT_SERVING), liveness probe still passes")
        else:
            bad(f"productinfo, database stopped: readiness {'failed' if went else 'still passes'}, liveness exit {alive.returncode}")

    # 6. graceful shutdown within terminationGracePeriodSeconds
    if "order" in services:
        dep = rendered.find(docs, "Deployment", f"{fullname}-order")
        grace = rendered.pod_template(dep)["spec"]["terminationGracePeriodSeconds"]
        c = containers["order"]
        start = time.monotonic()
        podman("stop", "-t", str(grace), c, timeout=grace + 30)
        took = time.monotonic() - start
        code = podman("inspect", c, "--format", "{{.State.ExitCode}}").stdout.strip()
        if code == "0" and took < grace:
            ok(f"order: SIGTERM -> drained and exited 0 after {took:.1f}s (terminationGracePeriodSeconds {grace})")
        else:
            bad(f"order: SIGTERM -> exit {code} after {took:.1f}s (terminationGracePeriodSeconds {grace})\n{logs(c)}")


def smoke(docs: list[dict], fullname: str, containers: dict, workdir: Path, shopctl: Path) -> None:
    key = workdir / "storefront.key"
    secret = rendered.find(docs, "Secret", f"{fullname}-storefront-signing-key")
    key.write_bytes(rendered.data_of(secret)["private.pem"])
    key.chmod(0o600)

    def token(role: str, subject: str) -> str:
        r = subprocess.run([str(shopctl), "token", "--role", role, "--key", str(key), "--subject", subject, "--ttl", "10m"],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    admin, customer = token("admin", "kube-play-admin"), token("customer", "kube-play-customer")
    inside = containers["order"]
    to_pi = tls_flags(docs, fullname, "order", "productinfo")
    to_order = tls_flags(docs, fullname, "order", "order")
    pi = f"{fullname}-productinfo-headless:50051"
    r = grpcurl(inside, to_pi, [pi, "list"])
    if r.returncode == 0 and "ecommerce.ProductInfo" in r.stdout:
        ok(f"grpcurl {' '.join(to_pi)} list over reflection (no token) through the headless Service name")
    else:
        bad(f"grpcurl list: {r.stdout}{r.stderr}")
    if "-plaintext" not in to_pi:
        tls_refusals(docs, fullname, containers, pi)
    r = grpcurl(inside, to_pi, ["-H", f"authorization: Bearer {admin}", "-d",
                         json.dumps({"name": "Kube play teapot", "unitPrice": {"currencyCode": "EUR", "units": 12}, "stock": 5}),
                         pi, "ecommerce.ProductInfo/addProduct"])
    if r.returncode != 0:
        bad(f"addProduct with an admin token: {r.stdout}{r.stderr}")
        return
    product = json.loads(r.stdout)["value"]
    ok(f"addProduct with an admin token signed by the storefront key from its Secret: {product}")
    r = grpcurl(inside, to_order, ["-H", f"authorization: Bearer {customer}", "-d",
                         json.dumps({"lines": [{"productId": product, "quantity": 2}], "destination": "Lisbon", "idempotencyKey": "kube-play-1"}),
                         "127.0.0.1:50051", "ecommerce.OrderManagement/addOrder"])
    if r.returncode == 0:
        ok(f"addOrder: order reserved stock on productinfo with its own service token: {json.loads(r.stdout)}")
    else:
        bad(f"addOrder: {r.stdout}{r.stderr}\n{logs(inside)}")
    r = grpcurl(inside, to_pi, ["-H", f"authorization: Bearer {customer}", "-d", json.dumps({"value": product}),
                         pi, "ecommerce.ProductInfo/getProduct"])
    if r.returncode == 0 and int(json.loads(r.stdout).get("stock", -1)) == 3:
        ok("getProduct: stock went from 5 to 3")
    else:
        bad(f"getProduct after the order: {r.stdout}{r.stderr}")
    if "storefront" not in containers:
        return

    # Through the storefront: the admin from its Secret logs in; a new
    # customer registers, fills a cart (prices from productinfo) and checks out
    # (an order placed with the order service, stock reserved on productinfo).
    front = containers["storefront"]
    to_front = tls_flags(docs, fullname, "storefront", "storefront")
    email = rendered.find(docs, "ConfigMap", f"{fullname}-storefront")["data"]["ADMIN_EMAIL"]
    password = rendered.data_of(rendered.find(docs, "Secret", f"{fullname}-storefront-admin"))["password"].decode()
    r = grpcurl(front, to_front, ["-d", json.dumps({"email": email, "password": password}), "127.0.0.1:50051", "ecommerce.Storefront/login"])
    if r.returncode == 0 and json.loads(r.stdout).get("token"):
        ok(f"storefront login as {email} with the password from the admin Secret (made by the secrets Job)")
    else:
        bad(f"storefront admin login: {r.stdout}{r.stderr}")
    r = grpcurl(front, to_front, ["-d", json.dumps({"email": "kube-play@example.org", "password": "kube-play-password-1", "name": "Kube Play"}),
                        "127.0.0.1:50051", "ecommerce.Storefront/register"])
    if r.returncode != 0:
        bad(f"storefront register: {r.stdout}{r.stderr}")
        return
    session = f"authorization: Bearer {json.loads(r.stdout)['token']}"
    r = grpcurl(front, to_front, ["-H", session, "-d", json.dumps({"productId": product, "quantity": 1}), "127.0.0.1:50051", "ecommerce.Storefront/addToCart"])
    if r.returncode != 0:
        bad(f"storefront addToCart: {r.stdout}{r.stderr}\n{logs(front)}")
        return
    r = grpcurl(front, to_front, ["-H", session, "-d", json.dumps({"destination": "Porto", "idempotencyKey": "kube-play-checkout"}),
                        "127.0.0.1:50051", "ecommerce.Storefront/checkout"])
    if r.returncode == 0:
        ok("storefront register -> addToCart -> checkout: the order was placed through order and productinfo")
    else:
        bad(f"storefront checkout: {r.stdout}{r.stderr}\n{logs(front)}")


def tls_refusals(docs: list[dict], fullname: str, containers: dict, pi: str) -> None:
    """With TLS on: what the gRPC ports refuse, and what the storefront's
    optional client auth admits."""
    inside = containers["order"]
    r = grpcurl(inside, ["-plaintext"], [pi, "list"])
    if r.returncode != 0:
        ok("productinfo refuses plaintext gRPC")
    else:
        bad(f"productinfo answered plaintext gRPC: {r.stdout}")
    r = grpcurl(inside, tls_flags(docs, fullname, "order", "productinfo", client_cert=False), [pi, "list"])
    if r.returncode != 0:
        ok("productinfo (client auth require) refuses a TLS client without a certificate")
    else:
        bad(f"productinfo answered a client without a certificate: {r.stdout}")
    r = grpcurl(inside, tls_flags(docs, fullname, "order", "storefront"), [pi, "list"])
    if r.returncode != 0:
        ok("productinfo's certificate does not pass as storefront's (-servername storefront fails): certificates are bound to names")
    else:
        bad("productinfo's certificate passed verification as storefront's")
    if "storefront" in containers:
        env = rendered.find(docs, "ConfigMap", f"{fullname}-storefront")["data"]
        r = grpcurl(containers["storefront"], tls_flags(docs, fullname, "storefront", "storefront", client_cert=False), ["127.0.0.1:50051", "list"])
        want = env.get("TLS_CLIENT_AUTH") == "optional"
        if (r.returncode == 0) == want:
            ok(f"storefront (client auth {env.get('TLS_CLIENT_AUTH')}) {'takes' if want else 'refuses'} a TLS client without a certificate")
        else:
            bad(f"storefront, client auth {env.get('TLS_CLIENT_AUTH')}: a client without a certificate got exit {r.returncode}: {r.stdout}{r.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered", type=Path)
    ap.add_argument("--objects", action="append", default=[], help="Secrets and ConfigMaps that exist beforehand (the secrets Job's, the TLS Secrets)")
    ap.add_argument("--shopctl", type=Path, required=True)
    ap.add_argument("--services", default=",".join(ORDER))
    ap.add_argument("--fullname", default="shop")
    ap.add_argument("--keep", action="store_true", help="leave the pods running (podman pod ls)")
    args = ap.parse_args()

    # podman keeps each played ConfigMap as a named volume and would reuse a
    # stale one: start and end without them.
    docs = load(args)
    volumes = [d["metadata"]["name"] for d in docs if d["kind"] in ("ConfigMap", "Secret")]
    for d in docs:  # pods a run that was killed may have left
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            podman("pod", "rm", "-f", "-t", "0", d["metadata"]["name"], check=False)
    for v in volumes:
        podman("volume", "rm", "-f", v, check=False)
    podman("network", "rm", "-f", NETWORK, check=False)
    podman("network", "create", NETWORK)
    played: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kube-play-") as tmp:
        try:
            run(args, Path(tmp), played)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            bad(str(e))
        except SystemExit:
            pass
        finally:
            if not args.keep:
                for name in reversed(played):
                    podman("pod", "rm", "-f", "-t", "0", name, check=False)
                podman("network", "rm", "-f", NETWORK, check=False)
                for v in volumes:
                    podman("volume", "rm", "-f", v, check=False)
    say(f"kube-play: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
