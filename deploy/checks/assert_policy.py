#!/usr/bin/env python3
"""What a cluster admin checks in rendered manifests that no scanner knows.

    assert_policy.py RENDERED.yaml --mode install|upgrade [-f VALUES.yaml ...] [--objects EXTRA.yaml]

RENDERED.yaml is `helm template` output of helm/shop with the given values
files (--mode upgrade: rendered with --is-upgrade). EXTRA.yaml holds objects
that exist before the release's own: the admin's (existing Secrets) and those
the secrets Job made (render-all.sh). Exits 1 listing every violation. The
pods' security settings, resources and image tags are checkov's (checkov_scan.py);
what it checks is this chart's own wiring:

  pods       every pod of the release: its own ServiceAccount, rendered, without
             token automount; no service links; numeric user and group; every
             ConfigMap/Secret/key it uses exists
  services   command /usr/local/bin/<service>, args [serve]; startup and liveness
             probes ask for "liveness", readiness for the service's own name,
             by grpc_health_probe exec (with TLS: the pod's own certificate,
             the CA and the service's logical name) or native grpc (with TLS:
             on the health-only port) as probes.type says, with the probe's
             own timeouts inside timeoutSeconds;
             terminationGracePeriodSeconds > DRAIN_DELAY + SHUTDOWN_GRACE;
             ClusterIP + headless Service whose selectors pick its pods; callers'
             *_TARGET names the headless Service; PDB, HPA, spreading as values say;
             every volume mounted read-only
  faults     FAULTS_FILE of every service is flags.json of the ConfigMap
             <release>-faults, mounted read-only as a directory (no subPath:
             changed flags must arrive); that ConfigMap, an ordinary object,
             holds {"flags": faults.flags}
  tls        with tls.enabled, the TLS files are the keys of the service's
             own Secret, mounted read-only as a directory (no subPath), client
             auth and reload interval as the values say; the only plaintext
             gRPC listener is the health-only one, opened only for native
             probes, on the pod's address, used by the probes alone, in no
             Service, reachable by no pod; cert-manager Certificates (with
             tls.certManager.enabled) carry the service's spiffe identity and
             DNS names, for server and client auth, issued by issuerRef or the
             chart's CA chain; without TLS none of this
  databases  each service's database where its mode (database.mode, else
             postgresql.mode) says: the embedded StatefulSet on a claim; or one
             CloudNativePG Cluster (initdb: the service's database and owner,
             nothing run as superuser, kept on uninstall) and nothing of the
             embedded kind, the service and its migration connecting to -rw
             with TLS verified (sslmode=verify-full, sslrootcert the Cluster's
             -ca ca.crt, the password file the -app Secret's password, both
             mounted read-only), productinfo reading from -ro
             (DATABASE_READ_URL, DATABASE_READ_MAX_LAG) when it has replicas;
             an external one's replica URL from its Secret; no password of
             theirs in the secrets Job's plan
  hooks      one migration Job per service running `migrate`, with a backoffLimit,
             as a hook exactly when it must be one (on a new CloudNativePG
             Cluster retrying long enough for it to start); the secrets Job exactly when
             something is to be made, before the migrations, its Role no wider
             than its plan, the API token only in its kubectl containers; and
             every object a hook Job needs exists at that point (same hook and a
             lower weight, made by the secrets Job before it, or already there)
  network    evaluates the NetworkPolicies: exactly storefront->order,
             storefront->productinfo, order->productinfo, service and its
             migration -> its own PostgreSQL, the secrets Job -> the API server,
             DNS, metrics from the monitoring namespace, storefront HTTP from the
             allowed peers; with CloudNativePG: the operator (its namespace and
             labels, no other pod) -> the Cluster's instances on 8000 and 5432,
             instances -> each other (5432, 8000), DNS and the API server,
             metrics -> 9187, and no other service's pods -> them; nothing else
             (the health-only port: nobody)
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import re
import sys
import urllib.parse
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netpol  # noqa: E402
import rendered  # noqa: E402
import report  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "helm" / "shop"
SERVICES = ("productinfo", "order", "storefront")
HEALTH = {"productinfo": "ecommerce.ProductInfo", "order": "ecommerce.OrderManagement", "storefront": "ecommerce.Storefront"}
CALLS = {"productinfo": [], "order": ["productinfo"], "storefront": ["productinfo", "order"]}
NS = "shop"

problems: list[str] = []


def fail(msg: str) -> None:
    problems.append(msg)


def merge(base: dict, over: dict) -> dict:
    """Values files over the defaults, as Helm merges them: null removes a
    value that is there, and is kept (a JSON null) where there is none, as in
    a fault flag's `"off": null` variant."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            if k in out:
                out.pop(k)
            else:
                out[k] = None
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def seconds(d: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", d)
    if not m:
        raise ValueError(f"not a duration: {d}")
    n, unit = int(m.group(1)), m.group(2)
    return n / 1000 if unit == "ms" else n * {"s": 1, "m": 60, "h": 3600}[unit]


def db_mode(values: dict, svc: str) -> str:
    """A service's database mode: its database.mode, else postgresql.mode
    ("internal" is the old name of "embedded")."""
    mode = values[svc]["database"]["mode"] or values["postgresql"]["mode"]
    return "embedded" if mode == "internal" else mode


def labels_of(doc: dict) -> dict:
    return rendered.pod_template(doc)["metadata"].get("labels") or {}


def component(doc: dict) -> str:
    return labels_of(doc).get("app.kubernetes.io/component", "")


def selects(selector: dict, doc: dict) -> bool:
    return netpol.selector_matches(selector, labels_of(doc))


# ------------------------------------------------------------------ pods


def check_pod(docs: list[dict], doc: dict, sas: dict) -> None:
    what = f"{doc['kind']} {doc['metadata']['name']}"
    pod = rendered.pod_template(doc)
    spec = pod["spec"]
    sa = spec.get("serviceAccountName")
    if not sa or sa == "default":
        fail(f"{what}: runs under the default ServiceAccount")
    elif sa not in sas:
        fail(f"{what}: ServiceAccount {sa} is not rendered")
    elif sas[sa].get("automountServiceAccountToken") is not False:
        fail(f"{what}: ServiceAccount {sa} automounts its token")
    if spec.get("enableServiceLinks") is not False:
        fail(f"{what}: enableServiceLinks is not false")
    psc = spec.get("securityContext") or {}
    for c in spec["containers"] + (spec.get("initContainers") or []):
        cw = f"{what} container {c['name']}"
        eff = {**psc, **(c.get("securityContext") or {})}
        for k in ("runAsUser", "runAsGroup"):
            if not isinstance(eff.get(k), int) or eff[k] <= 0:
                fail(f"{cw}: {k} is not a numeric non-root id")
        try:
            rendered.container_view(docs, pod, c)
        except rendered.Missing as e:
            fail(f"{cw}: {e}")


# ------------------------------------------------------------------ services


def check_service(docs: list[dict], values: dict, svc: str, fullname: str) -> None:
    v = values[svc]
    dep = rendered.find(docs, "Deployment", f"{fullname}-{svc}")
    if dep is None:
        fail(f"no Deployment {fullname}-{svc}")
        return
    what = f"Deployment {fullname}-{svc}"
    pod = rendered.pod_template(dep)
    spec = pod["spec"]
    c = spec["containers"][0]
    if c.get("command") != [f"/usr/local/bin/{svc}"] or c.get("args") != ["serve"]:
        fail(f"{what}: runs {c.get('command')} {c.get('args')}, not /usr/local/bin/{svc} serve")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}

    try:
        env = rendered.container_view(docs, pod, c).env
    except rendered.Missing as e:
        fail(f"{what}: {e}")
        return
    tls = values["tls"]["enabled"]

    # Probes: exec grpc_health_probe on the gRPC port (with the pod's own
    # certificate and the name callers verify, when TLS is on), or the
    # kubelet's gRPC probe on the gRPC port (on the health-only port with TLS).
    ptype = values["probes"]["type"]
    for kind in ("startup", "readiness", "liveness"):
        probe = c.get(f"{kind}Probe")
        want = HEALTH[svc] if kind == "readiness" else "liveness"
        if not probe:
            fail(f"{what}: no {kind} probe")
            continue
        if ptype == "grpc":
            g = probe.get("grpc") or {}
            port = ports.get("health") if tls else ports.get("grpc")
            if g.get("service") != want or g.get("port") != port or port is None:
                fail(f"{what}: {kind} probe is {probe}, want grpc service {want} on the {'health-only' if tls else 'gRPC'} port")
        else:
            cmd = (probe.get("exec") or {}).get("command") or []
            if not cmd or cmd[0] != "/usr/local/bin/grpc_health_probe":
                fail(f"{what}: {kind} probe does not exec grpc_health_probe: {cmd}")
                continue
            flags = dict((a.lstrip("-").split("=", 1) + [""])[:2] for a in cmd[1:])
            if flags.get("service") != want:
                fail(f"{what}: {kind} probe asks for {flags.get('service')!r}, want {want!r}")
            if flags.get("addr") != f"127.0.0.1:{ports.get('grpc')}":
                fail(f"{what}: {kind} probe addr {flags.get('addr')} is not the gRPC port")
            budget = seconds(flags.get("connect-timeout", "1s")) + seconds(flags.get("rpc-timeout", "1s"))
            if budget > probe["timeoutSeconds"] + 1 or seconds(flags.get("rpc-timeout", "1s")) >= probe["timeoutSeconds"]:
                fail(f"{what}: {kind} probe's own timeouts do not fit timeoutSeconds {probe['timeoutSeconds']}")
            got = {k: v for k, v in flags.items() if k.startswith("tls")}
            want_tls = {"tls": "", "tls-ca-cert": env.get("TLS_CA_FILE"), "tls-client-cert": env.get("TLS_CERT_FILE"),
                        "tls-client-key": env.get("TLS_KEY_FILE"), "tls-server-name": svc} if tls else {}
            if got != want_tls:
                fail(f"{what}: {kind} probe's TLS flags are {got}, want {want_tls}")

    check_tls(docs, values, svc, fullname, dep, c, env, ports)
    check_faults(docs, svc, fullname, dep, c, env)
    for m in c.get("volumeMounts") or []:
        if not m.get("readOnly"):
            fail(f"{what}: volume {m['name']} is mounted writable at {m['mountPath']}")

    # Shutdown.
    need = seconds(env["DRAIN_DELAY"]) + seconds(env["SHUTDOWN_GRACE"])
    if spec.get("terminationGracePeriodSeconds", 30) <= need:
        fail(f"{what}: terminationGracePeriodSeconds {spec.get('terminationGracePeriodSeconds')} <= drain + grace {need}")
    if env.get("MIGRATE_ON_START") != "false":
        fail(f"{what}: MIGRATE_ON_START is {env.get('MIGRATE_ON_START')!r}")
    if env.get("LOG_FORMAT") != values["logFormat"]:
        fail(f"{what}: LOG_FORMAT {env.get('LOG_FORMAT')} is not the value {values['logFormat']}")
    if values["otel"]["endpoint"] and env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != values["otel"]["endpoint"]:
        fail(f"{what}: OTEL_EXPORTER_OTLP_ENDPOINT is not set from otel.endpoint")
    if env.get("OTEL_SERVICE_NAME") != svc:
        fail(f"{what}: OTEL_SERVICE_NAME is {env.get('OTEL_SERVICE_NAME')!r}")

    # Services: the ClusterIP one and the headless one the callers balance over.
    for name, headless in ((f"{fullname}-{svc}", False), (f"{fullname}-{svc}-headless", True)):
        s = rendered.find(docs, "Service", name)
        if s is None:
            fail(f"no Service {name}")
            continue
        if headless != (s["spec"].get("clusterIP") == "None"):
            fail(f"Service {name}: clusterIP is {s['spec'].get('clusterIP')}")
        if not selects({"matchLabels": s["spec"]["selector"]}, dep):
            fail(f"Service {name}: selector does not pick {what}'s pods")
        for p in s["spec"]["ports"]:
            if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                fail(f"Service {name}: targetPort {p.get('targetPort')} is no port of {what}")
        others = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d is not dep and selects({"matchLabels": s["spec"]["selector"]}, d)]
        if others:
            fail(f"Service {name}: selector also picks {[d['metadata']['name'] for d in others]}")
    for callee in CALLS[svc]:
        var = f"{callee.upper()}_TARGET"
        want = f"dns:///{fullname}-{callee}-headless:{values['ports']['grpc']}"
        if env.get(var) != want:
            fail(f"{what}: {var} is {env.get(var)!r}, want {want!r}")

    # Availability.
    if v["autoscaling"]["enabled"]:
        hpa = rendered.find(docs, "HorizontalPodAutoscaler", f"{fullname}-{svc}")
        if hpa is None or hpa["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
            fail(f"{what}: autoscaling is on but no HPA targets it")
        if "replicas" in dep["spec"]:
            fail(f"{what}: sets replicas although an HPA scales it")
    elif dep["spec"].get("replicas") != v["replicas"]:
        fail(f"{what}: replicas {dep['spec'].get('replicas')} is not the value {v['replicas']}")
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"], dep)]
    if v["pdb"]["enabled"] and (len(pdbs) != 1 or pdbs[0]["spec"].get("maxUnavailable") != v["pdb"]["maxUnavailable"]):
        fail(f"{what}: want one PodDisruptionBudget with maxUnavailable {v['pdb']['maxUnavailable']}, found {len(pdbs)}")
    if not v["pdb"]["enabled"] and pdbs:
        fail(f"{what}: pdb.enabled is false but a PodDisruptionBudget selects it")
    tsc = spec.get("topologySpreadConstraints") or []
    if values["topologySpread"]["enabled"]:
        if not any(t["topologyKey"] == "kubernetes.io/hostname" and selects(t["labelSelector"], dep) for t in tsc):
            fail(f"{what}: no topology spread over kubernetes.io/hostname")
    elif tsc:
        fail(f"{what}: topologySpread is off but constraints are set")


# ------------------------------------------------------------------ TLS

POD_IP = "10.0.0.10"  # what rendered.container_view gives status.podIP


def check_tls(docs: list[dict], values: dict, svc: str, fullname: str, dep: dict, c: dict, env: dict, ports: dict) -> None:
    """TLS of a service's gRPC port, and the one plaintext gRPC listener.

    With tls.enabled: TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE are the
    keys tls.crt, tls.key and ca.crt of the service's TLS Secret, mounted
    read-only as a directory (a subPath mount would never see a renewal);
    TLS_CLIENT_AUTH and TLS_RELOAD_INTERVAL as the values say. The only
    plaintext gRPC listener is then the health-only one (HEALTH_LISTEN_ADDR,
    which serves grpc.health.v1.Health and nothing else): opened only for the
    kubelet's native probes, on the pod's address and the port named health,
    which the probes and nothing else use (no Service targets it; that no pod
    may reach it is check_network's). The other ports speak HTTP, not gRPC:
    metrics, and the storefront's web shop. Without TLS: none of this.
    """
    what = f"Deployment {dep['metadata']['name']}"
    spec = rendered.pod_template(dep)["spec"]
    t = values["tls"]
    health = env.get("HEALTH_LISTEN_ADDR", "off")
    if not t["enabled"]:
        stray = sorted(k for k in env if k.startswith("TLS_"))
        if stray or health != "off" or "health" in ports or any(m["name"] == "tls" for m in c.get("volumeMounts") or []):
            fail(f"{what}: tls.enabled is false, yet TLS is configured ({stray}, HEALTH_LISTEN_ADDR {health!r}, ports {sorted(ports)})")
        return
    secret = t["secrets"][svc] or f"{fullname}-{svc}-tls"
    mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for var, key in (("TLS_CERT_FILE", "tls.crt"), ("TLS_KEY_FILE", "tls.key"), ("TLS_CA_FILE", "ca.crt")):
        directory, _, name = env.get(var, "").rpartition("/")
        m = mounts.get(directory)
        if m is None:
            fail(f"{what}: {var}={env.get(var)!r} is in no mounted volume")
            continue
        if "subPath" in m:
            fail(f"{what}: {var}'s volume is mounted with a subPath, which is never updated: renewed certificates would not arrive")
        if not m.get("readOnly"):
            fail(f"{what}: {var}'s volume is mounted writable")
        s = (volumes.get(m["name"]) or {}).get("secret")
        # k8s/'s kustomize build names the generated Secret <name>-<hash>.
        if s is None or not re.fullmatch(re.escape(secret) + r"(-[a-z0-9]{10})?", s["secretName"]):
            fail(f"{what}: {var} is not from the Secret {secret}")
            continue
        items = {i["path"]: i["key"] for i in s.get("items") or []}
        if (items.get(name) if items else name) != key:
            fail(f"{what}: {var} is key {items.get(name, name)!r} of Secret {secret}, want {key!r}")
    if env.get("TLS_CLIENT_AUTH") != t["clientAuth"][svc]:
        fail(f"{what}: TLS_CLIENT_AUTH is {env.get('TLS_CLIENT_AUTH')!r}, want {t['clientAuth'][svc]!r}")
    if env.get("TLS_RELOAD_INTERVAL") != t["reloadInterval"]:
        fail(f"{what}: TLS_RELOAD_INTERVAL is {env.get('TLS_RELOAD_INTERVAL')!r}, want {t['reloadInterval']!r}")
    if env.get("LISTEN_ADDR", "").rsplit(":", 1)[-1] != str(ports.get("grpc")):
        fail(f"{what}: LISTEN_ADDR {env.get('LISTEN_ADDR')} is not the gRPC port, which TLS covers")

    native = values["probes"]["type"] == "grpc"
    if native:
        want = f"{POD_IP}:{values['ports']['health']}"
        if health != want or ports.get("health") != values["ports"]["health"]:
            fail(f"{what}: HEALTH_LISTEN_ADDR {health!r} on port {ports.get('health')}, want {want} (the pod's address, the port named health)")
    elif health != "off" or "health" in ports:
        fail(f"{what}: a plaintext health listener ({health!r}, ports {sorted(ports)}), though no probe needs one")
    listeners = {"grpc", "http-metrics"} | ({"http"} if svc == "storefront" else set()) | ({"health"} if native else set())
    if set(ports) != listeners:
        fail(f"{what}: ports {sorted(ports)}, want {sorted(listeners)}: a listener TLS may not cover")
    for s in (d for d in docs if d["kind"] == "Service" and selects({"matchLabels": d["spec"].get("selector") or {}}, dep)):
        for sp in s["spec"]["ports"]:
            if sp.get("targetPort") in ("health", ports.get("health", -1)) or sp.get("port") == values["ports"]["health"]:
                fail(f"Service {s['metadata']['name']}: exposes the plaintext health-only port")
            if sp.get("targetPort") == "grpc" and sp.get("appProtocol") == "kubernetes.io/h2c":
                fail(f"Service {s['metadata']['name']}: claims h2c (cleartext) for the TLS gRPC port")


# ------------------------------------------------------------------ faults

FAULTS_DIR = "/etc/shop/faults"


def check_faults(docs: list[dict], svc: str, fullname: str, dep: dict, c: dict, env: dict) -> None:
    """FAULTS_FILE is the key flags.json of the ConfigMap <fullname>-faults,
    in the directory where that ConfigMap is mounted, read-only and without
    a subPath: a subPath mount is never updated, and the services re-read the
    file so that a changed flag takes effect without a restart."""
    what = f"Deployment {dep['metadata']['name']}"
    spec = rendered.pod_template(dep)["spec"]
    name = f"{fullname}-faults"
    path = env.get("FAULTS_FILE")
    if path != f"{FAULTS_DIR}/flags.json":
        fail(f"{what}: FAULTS_FILE is {path!r}, want {FAULTS_DIR}/flags.json")
        return
    directory, _, file = path.rpartition("/")
    mounts = [m for m in c.get("volumeMounts") or [] if m["mountPath"].rstrip("/") == directory]
    if len(mounts) != 1:
        fail(f"{what}: FAULTS_FILE={path!r} is in {len(mounts)} mounted directories, want 1")
        return
    m = mounts[0]
    if "subPath" in m or "subPathExpr" in m:
        fail(f"{what}: the fault flags are mounted with a subPath, which is never updated: changed flags would not arrive")
    if not m.get("readOnly"):
        fail(f"{what}: the fault flags' volume is mounted writable")
    cm = next((v for v in spec.get("volumes") or [] if v["name"] == m["name"]), {}).get("configMap")
    if cm is None or cm["name"] != name:
        fail(f"{what}: FAULTS_FILE is not from the ConfigMap {name}")
        return
    items = {i["path"]: i["key"] for i in cm.get("items") or []}
    key = items.get(file) if items else file
    if key != "flags.json":
        fail(f"{what}: FAULTS_FILE is {'no key' if key is None else f'key {key!r}'} of ConfigMap {name}, want 'flags.json'")


def check_faults_configmap(docs: list[dict], values: dict, fullname: str) -> None:
    """The ConfigMap <fullname>-faults, always rendered as an ordinary object
    (a hook's would not be kept up to date), holds in flags.json the flagd
    flag file {"flags": faults.flags}."""
    name = f"{fullname}-faults"
    cm = rendered.find(docs, "ConfigMap", name)
    if cm is None:
        fail(f"no ConfigMap {name} (the fault flags)")
        return
    if hook_of(cm)[0]:
        fail(f"ConfigMap {name}: is a hook")
    try:
        got = json.loads((cm.get("data") or {})["flags.json"])
    except (KeyError, ValueError) as e:
        fail(f"ConfigMap {name}: flags.json is not a JSON document: {e!r}")
        return
    want = {"flags": values["faults"]["flags"]}
    if got != want:
        fail(f"ConfigMap {name}: flags.json is {got}, want {want} (faults.flags)")


def check_certificates(docs: list[dict], values: dict, fullname: str) -> None:
    """cert-manager objects exactly with tls.enabled and certManager.enabled:
    per service one Certificate writing the Secret its pods mount, with its
    identity (the spiffe URI of its logical name) and DNS names (the logical
    name, the names of both its Services), for server and client auth,
    ECDSA P-256, renewed before it expires; issued by issuerRef, or by the
    chart's CA Issuer whose CA Certificate (key kept on renewal) comes from a
    self-signed Issuer."""
    t = values["tls"]
    cm = t["certManager"]
    ours = [d for d in docs if str(d.get("apiVersion", "")).startswith("cert-manager.io/")]
    if not (t["enabled"] and cm["enabled"]):
        if ours:
            fail(f"cert-manager objects rendered though tls.enabled and tls.certManager.enabled are not both true: {[d['metadata']['name'] for d in ours]}")
        return
    certs = [d for d in ours if d["kind"] == "Certificate"]
    issuers = {d["metadata"]["name"]: d for d in ours if d["kind"] == "Issuer"}
    for svc in SERVICES:
        secret = t["secrets"][svc] or f"{fullname}-{svc}-tls"
        mine = [d for d in certs if d["spec"].get("secretName") == secret]
        if len(mine) != 1:
            fail(f"{svc}: {len(mine)} Certificates write its Secret {secret}, want 1")
            continue
        spec = mine[0]["spec"]
        what = f"Certificate {mine[0]['metadata']['name']}"
        identity = f"spiffe://{t['trustDomain']}/ns/{NS}/sa/{svc}"
        if spec.get("uris") != [identity]:
            fail(f"{what}: uris {spec.get('uris')}, want exactly [{identity}]")
        dns = [svc]
        for name in (f"{fullname}-{svc}", f"{fullname}-{svc}-headless"):
            if rendered.find(docs, "Service", name) is None:
                fail(f"{what}: names Service {name}, which is not rendered")
            dns += [name, f"{name}.{NS}", f"{name}.{NS}.svc", f"{name}.{NS}.svc.{t['clusterDomain']}"]
        if spec.get("dnsNames") != dns:
            fail(f"{what}: dnsNames {spec.get('dnsNames')}, want {dns}")
        if spec.get("isCA") or not {"server auth", "client auth"} <= set(spec.get("usages") or []):
            fail(f"{what}: usages {spec.get('usages')} (isCA {spec.get('isCA')}), want server auth and client auth of a leaf")
        key = spec.get("privateKey") or {}
        if (key.get("algorithm"), key.get("size")) != ("ECDSA", 256):
            fail(f"{what}: private key {key}, want ECDSA P-256")
        if (spec.get("duration"), spec.get("renewBefore")) != (cm["duration"], cm["renewBefore"]):
            fail(f"{what}: duration/renewBefore {spec.get('duration')}/{spec.get('renewBefore')}, want {cm['duration']}/{cm['renewBefore']}")
        elif not (seconds(cm["duration"]) >= 3600 and 300 <= seconds(cm["renewBefore"]) < seconds(cm["duration"])):
            fail(f"{what}: cert-manager refuses duration {cm['duration']} with renewBefore {cm['renewBefore']} (duration >= 1h > renewBefore >= 5m)")
        ref = spec["issuerRef"]
        if cm["issuerRef"]["name"]:
            if ref != cm["issuerRef"]:
                fail(f"{what}: issuerRef {ref}, want tls.certManager.issuerRef {cm['issuerRef']}")
            continue
        ca_issuer = issuers.get(ref.get("name")) if ref.get("kind", "Issuer") == "Issuer" else None
        if ca_issuer is None or "ca" not in ca_issuer["spec"]:
            fail(f"{what}: issuerRef {ref} is not a rendered CA Issuer")
            continue
        ca = [d for d in certs if d["spec"].get("secretName") == ca_issuer["spec"]["ca"]["secretName"]]
        if len(ca) != 1 or ca[0]["spec"].get("isCA") is not True:
            fail(f"Issuer {ref['name']}: its Secret is not that of one CA Certificate (isCA)")
            continue
        root = issuers.get(ca[0]["spec"]["issuerRef"]["name"])
        if root is None or "selfSigned" not in root["spec"] or (ca[0]["spec"].get("privateKey") or {}).get("rotationPolicy") != "Never":
            fail(f"Certificate {ca[0]['metadata']['name']}: not signed by a rendered self-signed Issuer, or its key changes on renewal")
    if cm["issuerRef"]["name"] and (issuers or len(certs) != len(SERVICES)):
        fail(f"with tls.certManager.issuerRef the chart renders no CA of its own, yet: {[d['metadata']['name'] for d in ours]}")


# ------------------------------------------------------------------ hooks

MADE_BY = "shop.grpc-shop.dev/made-by"  # on what the secrets Job made


def hook_of(doc: dict) -> tuple[set, int]:
    ann = doc["metadata"].get("annotations") or {}
    hooks = {h.strip() for h in ann.get("helm.sh/hook", "").split(",") if h.strip()}
    return hooks, int(ann.get("helm.sh/hook-weight", "0"))


def jobs_of(docs: list[dict], comp: str) -> list[dict]:
    return [d for d in docs if d["kind"] == "Job" and component(d) == comp]


def check_migrations(docs: list[dict], values: dict, svc: str, mode: str) -> None:
    jobs = jobs_of(docs, f"{svc}-migrate")
    if len(jobs) != 1:
        fail(f"{svc}: want exactly one migration Job, found {len(jobs)}")
        return
    job = jobs[0]
    what = f"Job {job['metadata']['name']}"
    c = rendered.pod_template(job)["spec"]["containers"][0]
    if c.get("command") != [f"/usr/local/bin/{svc}"] or c.get("args") != ["migrate"]:
        fail(f"{what}: runs {c.get('command')} {c.get('args')}, not /usr/local/bin/{svc} migrate")
    if not isinstance(job["spec"].get("backoffLimit"), int):
        fail(f"{what}: no backoffLimit")
    in_cluster = db_mode(values, svc) in ("embedded", "cloudnativepg")
    hooks, _ = hook_of(job)
    if in_cluster and mode == "install":
        want = set()  # an ordinary resource, created with the database
    elif in_cluster:
        want = {"pre-upgrade"}
    else:
        want = {"pre-install", "pre-upgrade"}
    if hooks != want:
        fail(f"{what}: hooks {sorted(hooks) or 'none'}, want {sorted(want) or 'none'}")
    limits = values["migration"]
    if db_mode(values, svc) == "cloudnativepg" and mode == "install":
        # A new Cluster takes minutes to its first primary: the Job must keep
        # trying (each try waits 60 s) for several times that, within its deadline.
        limits = values["migration"]["cloudnativepgInstall"]
        span = retry_span(job["spec"]["backoffLimit"])
        if span < 600 or job["spec"].get("activeDeadlineSeconds", 0) <= span:
            fail(f"{what}: backoffLimit {job['spec']['backoffLimit']} waits {span} s for a new Cluster "
                 f"(want at least 600) within activeDeadlineSeconds {job['spec'].get('activeDeadlineSeconds')}")
    got = (job["spec"]["backoffLimit"], job["spec"].get("activeDeadlineSeconds"))
    if got != (limits["backoffLimit"], limits["activeDeadlineSeconds"]):
        fail(f"{what}: backoffLimit/activeDeadlineSeconds {got}, want {(limits['backoffLimit'], limits['activeDeadlineSeconds'])}")


def retry_span(backoff_limit: int, per_try: int = 60) -> int:
    """Seconds from a Job's start to the end of its last try when every try
    fails after `per_try` s: the Job controller waits 10 s, 20 s, 40 s, ...
    (at most 6 minutes) before each retry."""
    return (backoff_limit + 1) * per_try + sum(min(10 * 2**i, 360) for i in range(backoff_limit))


def check_secrets_job(docs: list[dict], extra: list[dict], fullname: str) -> None:
    """The secrets Job: there exactly when something is to be made, before the
    migrations, its Role no wider than its plan, the API token only in its
    kubectl containers."""
    jobs = jobs_of(docs, "secrets")
    made = [d for d in extra if MADE_BY in (d["metadata"].get("annotations") or {})]
    if not jobs:
        if made or rendered.find(docs, "Role", f"{fullname}-secrets"):
            fail("no secrets Job, but objects it would make (or its Role) are there")
        return
    job = jobs[0]
    what = f"Job {job['metadata']['name']}"
    hooks, weight = hook_of(job)
    if hooks != {"pre-install", "pre-upgrade"}:
        fail(f"{what}: hooks {sorted(hooks)}, want pre-install and pre-upgrade")
    for other in (d for d in docs if d["kind"] == "Job" and d is not job and hook_of(d)[0]):
        if hook_of(other)[1] <= weight:
            fail(f"{what}: weight {weight} does not come before Job {other['metadata']['name']} ({hook_of(other)[1]})")
    plan = [line.split() for line in rendered.find(docs, "ConfigMap", job["metadata"]["name"])["data"]["plan"].splitlines() if line.strip()]
    secrets = {p[1] for p in plan if p[0] == "password"} | {p[2] for p in plan if p[0] == "key"}
    configmaps = {p[1] for p in plan if p[0] == "public-keys"}
    pod = rendered.pod_template(job)
    role = rendered.find(docs, "Role", pod["spec"]["serviceAccountName"])
    binding = rendered.find(docs, "RoleBinding", pod["spec"]["serviceAccountName"])
    if role is None or binding is None or binding["roleRef"]["name"] != role["metadata"]["name"] or binding["subjects"] != [
        {"kind": "ServiceAccount", "name": pod["spec"]["serviceAccountName"]}
    ]:
        fail(f"{what}: its ServiceAccount is not bound to exactly its own Role")
        return
    granted = {("secrets", "get"): set(), ("configmaps", "get"): set(), ("configmaps", "update"): set()}
    for rule in role["rules"]:
        for res in rule["resources"]:
            for verb in rule["verbs"]:
                if rule.get("apiGroups") != [""] or (res, verb) not in granted and not (verb == "create" and res in ("secrets", "configmaps")):
                    fail(f"Role {role['metadata']['name']}: grants {verb} on {res}, which the Job never does")
                elif verb != "create":
                    if not rule.get("resourceNames"):
                        fail(f"Role {role['metadata']['name']}: {verb} on every one of {res}")
                    granted[(res, verb)] |= set(rule.get("resourceNames") or [])
    want = {("secrets", "get"): secrets, ("configmaps", "get"): configmaps, ("configmaps", "update"): configmaps}
    for k, names in want.items():
        if granted[k] != names:
            fail(f"Role {role['metadata']['name']}: {k[1]} on {k[0]} {sorted(granted[k])}, its plan needs {sorted(names)}")
    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
        mounted = any(m["mountPath"] == token for m in c.get("volumeMounts") or [])
        if mounted != ("kubectl" in c["image"]):
            fail(f"{what} container {c['name']} ({c['image']}): the API token is {'mounted' if mounted else 'missing'}")
    made_names = {(d["kind"], d["metadata"]["name"]) for d in made}
    planned = {("Secret", n) for n in secrets} | {("ConfigMap", n) for n in configmaps}
    if not made_names <= planned:
        fail(f"{what}: made {sorted(made_names - planned)}, which its plan does not name")


def check_hook_needs(docs: list[dict], extra: list[dict], mode: str) -> None:
    """A hook Job runs before the release's ordinary objects are created
    (install) or changed (upgrade): what it uses must be a hook of the same
    phase with a lower weight, made by the secrets Job (a hook with a lower
    weight), an object the admin made, or (upgrade only) an ordinary object."""
    phase = f"pre-{mode}"
    secrets_jobs = jobs_of(docs, "secrets")
    for job in (d for d in docs if d["kind"] == "Job" and hook_of(d)[0]):
        what = f"Job {job['metadata']['name']}"
        _, weight = hook_of(job)
        pod = rendered.pod_template(job)
        needed = [("ServiceAccount", pod["spec"]["serviceAccountName"])]
        for vol in pod["spec"].get("volumes") or []:
            for src in [vol] + [s for s in (vol.get("projected") or {}).get("sources") or []]:
                if "secret" in src:
                    needed.append(("Secret", src["secret"].get("secretName") or src["secret"].get("name")))
                if "configMap" in src and src["configMap"]["name"] not in ("kube-root-ca.crt",):
                    needed.append(("ConfigMap", src["configMap"]["name"]))
        for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    needed.append(("Secret", ref["name"]))
        netpols = [d for d in docs if d["kind"] == "NetworkPolicy" and selects(d["spec"]["podSelector"], job)]
        needed += [("NetworkPolicy", d["metadata"]["name"]) for d in netpols if component_selector(d) == component(job)]
        binding = rendered.find(docs, "RoleBinding", pod["spec"]["serviceAccountName"])
        if binding is not None:
            needed += [("RoleBinding", binding["metadata"]["name"]), ("Role", binding["roleRef"]["name"])]
        for kind, name in needed:
            obj = rendered.find(docs, kind, name)
            if obj is None and kind == "Secret" and rendered.operator_made(docs, name):
                # The CloudNativePG operator makes it once the Cluster, an
                # ordinary object, exists: from the release being upgraded.
                if mode == "install":
                    fail(f"{what}: needs Secret {name}, which the operator makes only after the Cluster, created after this pre-install hook")
                continue
            if obj is None:
                made = rendered.find(extra, kind, name)
                if made is None:
                    fail(f"{what}: needs {kind} {name}, which nothing provides")
                elif MADE_BY in (made["metadata"].get("annotations") or {}) and not (
                    secrets_jobs and phase in hook_of(secrets_jobs[0])[0] and hook_of(secrets_jobs[0])[1] < weight
                ):
                    fail(f"{what}: needs {kind} {name}, which the secrets Job makes only after it")
                continue
            h, w = hook_of(obj)
            if h:
                if phase not in h or w >= weight:
                    fail(f"{what}: {kind} {name} is hook {sorted(h)} weight {w}; need {phase} with weight < {weight}")
            elif mode == "install":
                fail(f"{what}: {kind} {name} is an ordinary object, created only after this pre-install hook")


def component_selector(np: dict) -> str:
    return (np["spec"]["podSelector"].get("matchLabels") or {}).get("app.kubernetes.io/component", "")


# ------------------------------------------------------------------ network


def check_network(docs: list[dict], values: dict, fullname: str) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not values["networkPolicy"]["enabled"]:
        if policies:
            fail("networkPolicy.enabled is false but NetworkPolicies are rendered")
        return
    pods: dict[str, netpol.Endpoint] = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            cs = rendered.pod_template(d)["spec"]["containers"]
            ports = [(p.get("name", ""), p["containerPort"], p.get("protocol", "TCP")) for c in cs for p in c.get("ports") or []]
            pods[component(d)] = netpol.pod(d["metadata"]["name"], NS, labels_of(d), ports)
    grpc, metrics, http, health = (values["ports"][k] for k in ("grpc", "metrics", "http", "health"))
    allowed = {("storefront", "order", grpc), ("storefront", "productinfo", grpc), ("order", "productinfo", grpc)}
    instances: dict[str, list[str]] = {}  # service -> its Cluster's instance pods
    for svc in SERVICES:
        if db_mode(values, svc) == "embedded":
            allowed |= {(svc, f"{svc}-postgresql", 5432), (f"{svc}-migrate", f"{svc}-postgresql", 5432)}
        if db_mode(values, svc) == "cloudnativepg":
            cluster = rendered.find(docs, "Cluster", f"{fullname}-{svc}-db")
            instances[svc] = cnpg_instances(pods, cluster, svc) if cluster else []
    for svc, own in instances.items():
        for i in own:
            allowed |= {(svc, i, 5432), (f"{svc}-migrate", i, 5432)}
            allowed |= {(i, j, port) for j in own for port in (5432, 8000)}
    for src in pods:
        for dst in pods:
            # The health-only port is in no rule: only the kubelet probes it, from the node.
            for port in sorted({grpc, metrics, http, health, 5432, CNPG_STATUS, CNPG_METRICS}):
                got = netpol.connects(policies, pods[src], pods[dst], port)
                if got != ((src, dst, port) in allowed):
                    fail(f"network: {src} -> {dst}:{port} is {'allowed' if got else 'denied'}, want {'allowed' if not got else 'denied'}")

    dns = netpol.pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")])
    monitoring = netpol.pod("prometheus", "monitoring", {"app": "prometheus"})
    stranger = netpol.pod("stranger", "default", {"app": "stranger"})
    ingress_nginx = netpol.pod("controller", "ingress-nginx", {"app": "ingress-nginx"})
    internet = netpol.outside("internet", "203.0.113.7")
    api_server = netpol.outside("kube-apiserver", "10.0.0.1")
    api_cidrs = [p["ipBlock"]["cidr"] for p in values["networkPolicy"]["apiServer"] if "ipBlock" in p]
    api_clients = {"secrets"} | {i for own in instances.values() for i in own}
    for comp, p in pods.items():
        if not netpol.connects(policies, p, dns, 53, "UDP") or not netpol.connects(policies, p, dns, 53, "TCP"):
            fail(f"network: {comp} cannot reach cluster DNS")
        svc = comp.removesuffix("-migrate")
        external = svc in SERVICES and db_mode(values, svc) == "external"
        for port in (443, 80, 5432, 6432, 6443, grpc, CNPG_STATUS):
            # An external database's address range is open on its port, the
            # API server's to the secrets Job and the Clusters' instances on
            # its ports, and nothing else.
            ip = ipaddress.ip_address(internet.ip)
            db = values[svc]["database"] if external else {}
            want = (
                external
                and port == db["external"]["port"]
                and ip in ipaddress.ip_network(db["external"]["cidr"])
            ) or (comp in api_clients and port in values["networkPolicy"]["apiServerPorts"] and any(ip in ipaddress.ip_network(c) for c in api_cidrs))
            if netpol.connects(policies, p, internet, port) != want:
                fail(f"network: {comp} {'may not' if want else 'may'} reach 203.0.113.7:{port}")
        for port in values["networkPolicy"]["apiServerPorts"]:
            if comp in api_clients and api_cidrs and not netpol.connects(policies, p, api_server, port):
                fail(f"network: {comp} cannot reach the API server on {port}")
        for outsider in (stranger, monitoring, ingress_nginx):
            for port in (grpc, health, 5432, CNPG_STATUS):
                if netpol.connects(policies, outsider, p, port):
                    fail(f"network: {outsider.namespace}/{outsider.name} may reach {comp}:{port}")
    for svc in SERVICES:
        p = pods[svc]
        if not netpol.connects(policies, monitoring, p, metrics):
            fail(f"network: monitoring cannot scrape {svc}:{metrics}")
        if netpol.connects(policies, stranger, p, metrics):
            fail(f"network: default/stranger may scrape {svc}:{metrics}")
        db = values[svc]["database"]
        if db_mode(values, svc) == "external":
            host = netpol.outside("database", db["external"]["cidr"].split("/")[0])
            for who in (svc, f"{svc}-migrate"):
                if not netpol.connects(policies, pods[who], host, db["external"]["port"]):
                    fail(f"network: {who} cannot reach its external database {db['external']['cidr']}:{db['external']['port']}")
        if values["otel"]["endpoint"]:
            collector = netpol.pod("collector", "observability", {"app": "otel-collector"}, [("otlp", 4317, "TCP")])
            if not netpol.connects(policies, p, collector, 4317):
                fail(f"network: {svc} cannot reach the OTLP collector")
    check_cnpg_network(policies, values, pods, instances, monitoring, stranger)
    front = pods["storefront"]
    open_to = values["networkPolicy"]["storefrontHttpFrom"]
    if not netpol.connects(policies, ingress_nginx, front, http):
        fail("network: the ingress controller cannot reach the storefront's HTTP port")
    if netpol.connects(policies, stranger, front, http) != (not open_to):
        fail(f"network: default/stranger {'may' if open_to else 'may not'} reach the storefront's HTTP port")


# ------------------------------------------------------------------ databases

CNPG_STATUS, CNPG_METRICS = 8000, 9187  # an instance manager's status port, its metrics


def mounted_file(pod: dict, container: dict, path: str) -> tuple[str, str] | None:
    """(Secret, key) whose content the file `path` of `container` is: a key of
    a Secret volume, or of a projected volume's Secret source, mounted
    read-only as a directory (no subPath, so that a renewed file arrives).
    None for anything else."""
    directory, _, name = path.rpartition("/")
    mounts = [m for m in container.get("volumeMounts") or [] if m["mountPath"].rstrip("/") == directory]
    if len(mounts) != 1 or "subPath" in mounts[0] or not mounts[0].get("readOnly"):
        return None
    vol = next((v for v in pod["spec"].get("volumes") or [] if v["name"] == mounts[0]["name"]), {})
    if "secret" in vol:
        sources = [{"name": vol["secret"]["secretName"], "items": vol["secret"].get("items")}]
    else:
        sources = [src["secret"] for src in (vol.get("projected") or {}).get("sources") or [] if "secret" in src]
    for src in sources:
        for item in src.get("items") or []:
            if item["path"] == name:
                return src["name"], item["key"]
    return None


def check_cnpg_url(what: str, var: str, url: str, pod: dict, c: dict, want: dict) -> None:
    """A URL of a Cluster's Service: the owner at <cluster>-rw or -ro:5432,
    its database, no password in it, TLS verified against the file of the
    Cluster's CA."""
    u = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(u.query))
    got = {"scheme": u.scheme in ("postgres", "postgresql"), "user": u.username, "password": u.password,
           "host": u.hostname, "port": u.port, "database": u.path.lstrip("/")}
    expect = {"scheme": True, "user": want["user"], "password": None, "host": want["host"], "port": 5432, "database": want["database"]}
    if got != expect:
        fail(f"{what}: {var} {url!r}: {got}, want {expect}")
    if query.get("sslmode") != "verify-full":
        fail(f"{what}: {var} has sslmode {query.get('sslmode')!r}, want verify-full (the Cluster's CA and its Service's name)")
    ca = mounted_file(pod, c, query.get("sslrootcert", ""))
    if ca != (f"{want['cluster']}-ca", "ca.crt"):
        fail(f"{what}: {var}'s sslrootcert {query.get('sslrootcert')!r} is {ca or 'no file of a read-only Secret volume'}, want key ca.crt of Secret {want['cluster']}-ca")


def check_database(docs: list[dict], values: dict, svc: str, fullname: str) -> None:
    """The service's database where its mode says (see the module's
    "databases"); the Deployment's and the migration Job's environment."""
    mode = db_mode(values, svc)
    v = values[svc]
    cluster = f"{fullname}-{svc}-db"
    found = rendered.find(docs, "Cluster", cluster)
    dep = rendered.find(docs, "Deployment", f"{fullname}-{svc}")
    jobs = jobs_of(docs, f"{svc}-migrate")
    runs = []
    for obj in ([dep] if dep else []) + jobs[:1]:
        pod = rendered.pod_template(obj)
        c = pod["spec"]["containers"][0]
        try:
            runs.append((obj, pod, c, rendered.container_view(docs, pod, c).env))
        except rendered.Missing:
            continue  # check_pod says what is missing
    for obj, pod, c, env in runs:
        if obj["kind"] == "Job" and {"DATABASE_READ_URL", "DATABASE_READ_MAX_LAG"} & env.keys():
            fail(f"Job {obj['metadata']['name']}: `migrate` only writes, yet gets a read replica")
    dep_env = next((env for obj, _, _, env in runs if obj is dep), None)
    replicas = v.get("readReplicas") or {"enabled": False}
    if mode != "cloudnativepg":
        if found is not None:
            fail(f"{svc}: database mode {mode}, yet Cluster {cluster} is rendered")
        ext = v["database"]["external"]
        read = ext.get("readUrlKey") if ext["existingSecret"] else ext.get("readUrl")
        want_read = mode == "external" and replicas["enabled"] and bool(read)
        if dep_env is not None and want_read != ("DATABASE_READ_URL" in dep_env):
            fail(f"Deployment {fullname}-{svc}: DATABASE_READ_URL {'missing' if want_read else 'set'} (database mode {mode})")
        elif dep_env is not None and want_read:
            if not ext["existingSecret"] and dep_env["DATABASE_READ_URL"] != ext["readUrl"]:
                fail(f"Deployment {fullname}-{svc}: DATABASE_READ_URL is not database.external.readUrl")
            if dep_env.get("DATABASE_READ_MAX_LAG") != replicas["maxLag"]:
                fail(f"Deployment {fullname}-{svc}: DATABASE_READ_MAX_LAG {dep_env.get('DATABASE_READ_MAX_LAG')!r}, want {replicas['maxLag']!r}")
        return

    cnpg = values["postgresql"]["cloudnativepg"]
    internal = v["database"]["internal"]
    if found is None:
        fail(f"{svc}: database mode cloudnativepg, but no Cluster {cluster}")
        return
    what = f"Cluster {cluster}"
    spec = found["spec"]
    if spec.get("instances") != cnpg["instances"]:
        fail(f"{what}: instances {spec.get('instances')}, want {cnpg['instances']}")
    # initdb makes the database and its owner, nothing else: the schema is the
    # migrations' (pg_trgm is trusted: the owner creates it), nothing runs as superuser.
    initdb = (spec.get("bootstrap") or {}).get("initdb")
    if initdb != {"database": internal["database"], "owner": internal["user"]} or set(spec["bootstrap"]) != {"initdb"}:
        fail(f"{what}: bootstrap {spec.get('bootstrap')}, want initdb of database {internal['database']!r} owned by {internal['user']!r} and nothing else")
    if spec.get("enableSuperuserAccess"):
        fail(f"{what}: superuser access over the network is on")
    if (spec.get("storage") or {}).get("size") != str(cnpg["storage"]["size"]):
        fail(f"{what}: storage {spec.get('storage')}, want size {cnpg['storage']['size']}")
    if (found["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") != "keep":
        fail(f"{what}: not kept on uninstall (deleting a Cluster deletes its volumes)")
    if hook_of(found)[0]:
        fail(f"{what}: is a hook")
    for kind, name in (("StatefulSet", f"{fullname}-{svc}-postgresql"), ("Service", f"{fullname}-{svc}-postgresql"),
                       ("Service", f"{fullname}-{svc}-postgresql-hl"), ("ServiceAccount", f"{fullname}-{svc}-postgresql"),
                       ("Secret", f"{fullname}-{svc}-db")):
        if rendered.find(docs, kind, name) is not None:
            fail(f"{svc}: on CloudNativePG, yet {kind} {name} of the embedded database exists")
    plan = rendered.find(docs, "ConfigMap", f"{fullname}-secrets")
    for line in ((plan or {}).get("data") or {}).get("plan", "").splitlines():
        if any(n in line.split() for n in (f"{fullname}-{svc}-db", f"{cluster}-app")):
            fail(f"{svc}: the secrets Job makes {line!r}, but the operator makes a Cluster's credentials")
    np = rendered.find(docs, "NetworkPolicy", cluster)
    if np is None or np["spec"]["podSelector"] != {"matchLabels": {"cnpg.io/cluster": cluster}}:
        fail(f"{what}: no NetworkPolicy {cluster} selecting its pods (cnpg.io/cluster)")
    for obj, pod, c, env in runs:
        who = f"{obj['kind']} {obj['metadata']['name']}"
        want = {"cluster": cluster, "user": internal["user"], "database": internal["database"]}
        check_cnpg_url(who, "DATABASE_URL", env.get("DATABASE_URL", ""), pod, c, {**want, "host": f"{cluster}-rw"})
        pw = mounted_file(pod, c, env.get("DATABASE_PASSWORD_FILE", ""))
        if pw != (f"{cluster}-app", "password"):
            fail(f"{who}: DATABASE_PASSWORD_FILE is {pw or 'no file of a read-only Secret volume'}, want key password of Secret {cluster}-app")
        if obj is dep:
            want_read = replicas["enabled"] and cnpg["instances"] > 1
            if want_read != ("DATABASE_READ_URL" in env):
                fail(f"{who}: DATABASE_READ_URL {'missing' if want_read else 'set'} ({cnpg['instances']} instances, readReplicas {replicas})")
            elif want_read:
                check_cnpg_url(who, "DATABASE_READ_URL", env["DATABASE_READ_URL"], pod, c, {**want, "host": f"{cluster}-ro"})
                if env.get("DATABASE_READ_MAX_LAG") != replicas["maxLag"]:
                    fail(f"{who}: DATABASE_READ_MAX_LAG {env.get('DATABASE_READ_MAX_LAG')!r}, want {replicas['maxLag']!r}")


def cnpg_instances(pods: dict, cluster: dict, svc: str) -> list[str]:
    """Two instance pods of a Cluster as the operator labels them, added to
    `pods`: the primary, and a replica that also carries the Cluster's own
    labels (the release's), as pods do when the operator is set to pass
    them on (its INHERITED_LABELS): the policies must hold either way."""
    name = cluster["metadata"]["name"]
    ports = [("postgresql", 5432, "TCP"), ("metrics", CNPG_METRICS, "TCP"), ("status", CNPG_STATUS, "TCP")]
    base = {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"}
    primary = {**base, "cnpg.io/instanceName": f"{name}-1", "cnpg.io/instanceRole": "primary", "role": "primary"}
    replica = {**(cluster["metadata"].get("labels") or {}), **base, "cnpg.io/instanceName": f"{name}-2",
               "cnpg.io/instanceRole": "replica", "role": "replica"}
    pods[f"{svc}-db-1"] = netpol.pod(f"{name}-1", NS, primary, ports)
    pods[f"{svc}-db-2"] = netpol.pod(f"{name}-2", NS, replica, ports)
    return [f"{svc}-db-1", f"{svc}-db-2"]


def check_cnpg_network(policies: list[dict], values: dict, pods: dict, instances: dict, monitoring, stranger) -> None:
    """Who reaches a Cluster's instances from outside the release: the
    operator (its namespace and labels, both) on 8000 and 5432, the metrics
    scrapers on 9187; no look-alike of the operator, no stranger."""
    if not instances:
        return
    cnpg = values["postgresql"]["cloudnativepg"]
    ns = cnpg["operatorNamespace"]
    operator = netpol.pod("cnpg-controller-manager", ns, cnpg["operatorPodLabels"])
    look_alikes = (netpol.pod("look-alike", "default" if ns != "default" else "other", cnpg["operatorPodLabels"]),
                   netpol.pod("neighbour", ns, {"app.kubernetes.io/name": "something-else"}))
    open_metrics = not values["networkPolicy"]["metricsFrom"]
    for own in instances.values():
        for i in own:
            for port in (CNPG_STATUS, 5432):
                if not netpol.connects(policies, operator, pods[i], port):
                    fail(f"network: the CloudNativePG operator ({ns}, {cnpg['operatorPodLabels']}) cannot reach {i}:{port}")
                for other in look_alikes:
                    if netpol.connects(policies, other, pods[i], port):
                        fail(f"network: {other.namespace}/{other.name}, not the operator, may reach {i}:{port}")
            if not netpol.connects(policies, monitoring, pods[i], CNPG_METRICS):
                fail(f"network: monitoring cannot scrape {i}:{CNPG_METRICS}")
            if netpol.connects(policies, stranger, pods[i], CNPG_METRICS) != open_metrics:
                fail(f"network: default/stranger {'may not' if open_metrics else 'may'} scrape {i}:{CNPG_METRICS}")


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered")
    ap.add_argument("--mode", choices=("install", "upgrade"), required=True)
    ap.add_argument("-f", "--values", action="append", default=[])
    ap.add_argument("--objects", action="append", default=[], help="objects that exist beforehand (the admin's, the secrets Job's)")
    ap.add_argument("--fullname", default="shop")
    args = ap.parse_args()

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in args.values:
        values = merge(values, yaml.safe_load(Path(f).read_text()) or {})
    fullname = values.get("fullnameOverride") or args.fullname
    docs = rendered.load_file(args.rendered)
    extra = [d for f in args.objects for d in rendered.load_file(f)]
    docs_all = docs + extra

    sas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    for d in docs:
        if d["kind"] in rendered.POD_KINDS:
            check_pod(docs_all, d, sas)
    for svc in SERVICES:
        check_service(docs_all, values, svc, fullname)
        check_migrations(docs, values, svc, args.mode)
        embedded = db_mode(values, svc) == "embedded"
        sts = rendered.find(docs, "StatefulSet", f"{fullname}-{svc}-postgresql")
        if embedded != (sts is not None):
            fail(f"{svc}: database mode {db_mode(values, svc)} but StatefulSet {'missing' if embedded else 'rendered'}")
        check_database(docs_all, values, svc, fullname)
        if sts is not None and not sts["spec"].get("volumeClaimTemplates"):
            fail(f"StatefulSet {fullname}-{svc}-postgresql keeps its data on no PersistentVolumeClaim")
    clusters = rendered.cnpg_clusters(docs)
    want = sorted(f"{fullname}-{svc}-db" for svc in SERVICES if db_mode(values, svc) == "cloudnativepg")
    if sorted(c["metadata"]["name"] for c in clusters) != want:
        fail(f"CloudNativePG Clusters {sorted(c['metadata']['name'] for c in clusters)}, want exactly {want}")
    check_faults_configmap(docs, values, fullname)
    check_certificates(docs, values, fullname)
    check_secrets_job(docs, extra, fullname)
    check_hook_needs(docs, extra, args.mode)
    check_network(docs, values, fullname)
    if values["ingress"]["enabled"] != (rendered.find(docs, "Ingress", f"{fullname}-storefront") is not None):
        fail("ingress.enabled and the rendered Ingress disagree")
    return report.finish(problems, Path(args.rendered).name, "pods, services, hooks and network policy as a cluster admin expects")


if __name__ == "__main__":
    sys.exit(main())
