"""Rendered Kubernetes manifests, read the way the kubelet would read them.

Shared by the offline checks: load `helm template` output, find objects, and
work out for one container of one pod exactly which environment variables it
gets (env, envFrom, ConfigMap/Secret keys, fieldRefs, `$(VAR)` expansion) and
which files appear under each of its volume mounts (ConfigMap, Secret and
projected volumes with their `items`); `materialise` writes those files under
a directory so that a real program can run with them. A Secret that a
rendered cert-manager Certificate names (spec.secretName) exists as
cert-manager writes it: tls.crt, tls.key and ca.crt, with placeholder PEM
content (`issued`); the Secrets the CloudNativePG operator makes for a
rendered Cluster exist as it writes them: <cluster>-app with the owner's
credentials and <cluster>-ca with the CA of the servers' certificates
(`operator_made`, placeholder password and PEM, or a real CA given).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

POD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "Pod")

# What every namespace holds without anyone rendering it.
CLUSTER_OBJECTS = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"},
     "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n(the cluster's CA)\n-----END CERTIFICATE-----\n"}},
]


def load(text: str) -> list[dict]:
    """Every non-empty YAML document of a rendered stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def load_file(path: str | Path) -> list[dict]:
    return load(Path(path).read_text())


def find(docs: list[dict], kind: str, name: str) -> dict | None:
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    return None


def pod_template(doc: dict) -> dict:
    """The pod (metadata + spec) an object runs; a StatefulSet's claim
    templates become the persistentVolumeClaim volumes its pods get."""
    if doc["kind"] == "Pod":
        return doc
    template = doc["spec"]["template"]
    claims = doc["spec"].get("volumeClaimTemplates") or []
    if claims:
        template = {**template, "spec": {**template["spec"]}}
        template["spec"]["volumes"] = list(template["spec"].get("volumes") or []) + [
            {"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": t["metadata"]["name"]}} for t in claims
        ]
    return template


def is_hook(doc: dict) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def data_of(doc: dict) -> dict[str, bytes]:
    """A ConfigMap's or Secret's data as bytes."""
    out: dict[str, bytes] = {}
    for k, v in (doc.get("data") or {}).items():
        out[k] = base64.b64decode(v) if doc["kind"] == "Secret" else str(v).encode()
    for k, v in (doc.get("stringData") or {}).items():
        out[k] = str(v).encode()
    for k, v in (doc.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v)
    return out


class Missing(Exception):
    """A referenced ConfigMap, Secret or key is not in the rendered manifests."""


@dataclass
class ContainerView:
    env: dict[str, str] = field(default_factory=dict)
    # mountPath -> {relative file path: content}
    mounts: dict[str, dict[str, bytes]] = field(default_factory=dict)


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(value: str, env: dict[str, str]) -> str:
    # Kubernetes expands $(VAR) from variables defined before; $$ escapes.
    def sub(m: re.Match) -> str:
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, value).replace("$$", "$")


def issued(docs: list[dict], name: str) -> dict | None:
    """The Secret cert-manager makes for a rendered Certificate with
    spec.secretName `name` (placeholder certificates), or None."""
    for d in docs:
        if d.get("kind") == "Certificate" and d.get("apiVersion", "").startswith("cert-manager.io/") and d["spec"].get("secretName") == name:
            pem = "-----BEGIN {0}-----\n(issued by cert-manager for Certificate {1})\n-----END {0}-----\n"
            cert = d["metadata"]["name"]
            return {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "annotations": {"cert-manager.io/certificate-name": cert}},
                "type": "kubernetes.io/tls",
                "stringData": {"tls.crt": pem.format("CERTIFICATE", cert), "tls.key": pem.format("PRIVATE KEY", cert),
                               "ca.crt": pem.format("CERTIFICATE", cert)},
            }
    return None


def cnpg_clusters(docs: list[dict]) -> list[dict]:
    """The rendered CloudNativePG Clusters."""
    return [d for d in docs if d.get("kind") == "Cluster" and str(d.get("apiVersion", "")).startswith("postgresql.cnpg.io/")]


def cnpg_secrets(docs: list[dict], ca_pem: bytes | None = None) -> list[dict]:
    """The Secrets the CloudNativePG operator makes for each rendered Cluster,
    with the keys it writes: <cluster>-app (kubernetes.io/basic-auth: the
    owner of the initdb database, a password, the -rw Service, a URI, a
    pgpass line, ...) and <cluster>-ca (ca.crt, ca.key: the CA of the
    servers' certificates). `ca_pem`: a real CA certificate for ca.crt, else
    a placeholder PEM."""
    out = []
    for d in cnpg_clusters(docs):
        cluster = d["metadata"]["name"]
        initdb = ((d["spec"].get("bootstrap") or {}).get("initdb")) or {}
        db = initdb.get("database", "app")
        owner = initdb.get("owner", db)
        password = f"made-by-the-operator-for-{cluster}"
        host = f"{cluster}-rw"
        pem = "-----BEGIN {0}-----\n(made by the CloudNativePG operator for Cluster {1})\n-----END {0}-----\n"
        out.append({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"{cluster}-app", "labels": {"cnpg.io/cluster": cluster}},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": owner, "password": password, "dbname": db, "host": host, "port": "5432",
                           "uri": f"postgresql://{owner}:{password}@{host}:5432/{db}",
                           "jdbc-uri": f"jdbc:postgresql://{host}:5432/{db}?password={password}&user={owner}",
                           "pgpass": f"{host}:5432:{db}:{owner}:{password}\n"},
        })
        out.append({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"{cluster}-ca", "labels": {"cnpg.io/cluster": cluster}},
            "type": "Opaque",
            "stringData": {"ca.crt": ca_pem.decode() if ca_pem else pem.format("CERTIFICATE", cluster),
                           "ca.key": pem.format("EC PRIVATE KEY", cluster)},
        })
    return out


def operator_made(docs: list[dict], name: str) -> dict | None:
    """The Secret `name` the CloudNativePG operator makes for a rendered Cluster, or None."""
    return find(cnpg_secrets(docs), "Secret", name)


def secret(docs: list[dict], name: str) -> dict | None:
    """A Secret the manifests hold, or one a rendered Certificate or Cluster makes."""
    return find(docs, "Secret", name) or issued(docs, name) or operator_made(docs, name)


def _source(docs: list[dict], kind: str, name: str, optional: bool) -> dict[str, bytes]:
    obj = find(docs, kind, name) or find(CLUSTER_OBJECTS, kind, name) or (secret(docs, name) if kind == "Secret" else None)
    if obj is None:
        if optional:
            return {}
        raise Missing(f"{kind} {name} is not in the rendered manifests")
    return data_of(obj)


def container_view(
    docs: list[dict],
    pod: dict,
    container: dict,
    *,
    pod_name: str = "shop-pod-0",
    namespace: str = "shop",
) -> ContainerView:
    """The environment and mounted files `container` of `pod` would see."""
    view = ContainerView()
    meta = pod.get("metadata") or {}
    spec = pod["spec"]
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": "10.0.0.10",
        "spec.nodeName": "node-0",
    }
    for k, v in (meta.get("labels") or {}).items():
        fields[f"metadata.labels['{k}']"] = v

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref = src["configMapRef"]
            data = _source(docs, "ConfigMap", ref["name"], ref.get("optional", False))
        else:
            ref = src["secretRef"]
            data = _source(docs, "Secret", ref["name"], ref.get("optional", False))
        for k, v in data.items():
            view.env[prefix + k] = v.decode()

    for e in container.get("env") or []:
        name = e["name"]
        if "value" in e:
            view.env[name] = _expand(str(e["value"]), view.env)
            continue
        vf = e.get("valueFrom") or {}
        if "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind, ref = ("ConfigMap", vf["configMapKeyRef"]) if "configMapKeyRef" in vf else ("Secret", vf["secretKeyRef"])
            data = _source(docs, kind, ref["name"], ref.get("optional", False))
            if ref["key"] not in data:
                if ref.get("optional", False):
                    continue
                raise Missing(f"{kind} {ref['name']} has no key {ref['key']!r} (env {name})")
            view.env[name] = data[ref["key"]].decode()
        elif "fieldRef" in vf:
            view.env[name] = fields[vf["fieldRef"]["fieldPath"]]
        elif "resourceFieldRef" in vf:
            view.env[name] = "1"
        else:
            view.env[name] = ""

    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        vol = volumes.get(m["name"])
        if vol is None:
            raise Missing(f"volumeMount {m['name']} has no volume")
        files = _volume_files(docs, vol)
        if "subPath" in m:
            files = {Path(m["mountPath"]).name: files[m["subPath"]]}
        view.mounts[m["mountPath"]] = files
    return view


def _project(data: dict[str, bytes], items: list[dict] | None, what: str) -> dict[str, bytes]:
    if not items:
        return dict(data)
    out = {}
    for it in items:
        if it["key"] not in data:
            raise Missing(f"{what} has no key {it['key']!r}")
        out[it["path"]] = data[it["key"]]
    return out


def _volume_files(docs: list[dict], vol: dict) -> dict[str, bytes]:
    if "configMap" in vol:
        cm = vol["configMap"]
        data = _source(docs, "ConfigMap", cm["name"], cm.get("optional", False))
        return _project(data, cm.get("items"), f"ConfigMap {cm['name']}")
    if "secret" in vol:
        s = vol["secret"]
        data = _source(docs, "Secret", s["secretName"], s.get("optional", False))
        return _project(data, s.get("items"), f"Secret {s['secretName']}")
    if "projected" in vol:
        out: dict[str, bytes] = {}
        for src in vol["projected"]["sources"]:
            out.update(_volume_files(docs, src if "secret" not in src else {"secret": {**src["secret"], "secretName": src["secret"]["name"]}}))
        return out
    # emptyDir, persistentVolumeClaim, ...: empty at start.
    return {}


def materialise(docs: list[dict], pod: dict, container: dict, root: Path) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of `container`, with its mounted files written under root.

    The only change from what the kubelet would give it: a path under a
    volume's mountPath, in the command, the arguments or the environment,
    becomes the same path under root.
    """
    view = container_view(docs, pod, container)
    for mount_path, files in view.mounts.items():
        base = root / mount_path.lstrip("/")
        base.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(content)
    # Longest mount paths first, so /etc/shop/db is not mistaken for /etc/shop.
    mounts = sorted(view.mounts, key=len, reverse=True)

    def moved(v: str) -> str:
        for m in mounts:
            if v == m:
                return str(root / m.lstrip("/"))
            v = v.replace(m.rstrip("/") + "/", str(root / m.lstrip("/")) + "/")
        return v

    env = {k: moved(v) for k, v in view.env.items()}
    argv = [moved(a) for a in list(container.get("command") or []) + list(container.get("args") or [])]
    return argv, env
