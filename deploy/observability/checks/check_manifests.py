#!/usr/bin/env python3
"""Check the rendered observability manifests and how they meet the shop.

    check_manifests.py --observability OBS.yaml --rules RULES.yaml
                       [--shop NAME=RENDER.yaml ...] [--netpol PATH/netpol.py]

Needs PyYAML (the .tools venv has it). Offline; what it checks:

1. what checkov (check.sh, step 3) does not check of every workload in
   OBS.yaml: ServiceAccounts rendered and without token automount (Prometheus
   mounts one, as its service discovery needs), probes on declared ports,
   image tags that match the app.kubernetes.io/version label, IfNotPresent,
   only the volume types of the "restricted" Pod Security Standard (the pods'
   security settings, resources, tags and probes are checkov's);
2. references inside OBS.yaml: ServiceAccounts, ConfigMaps, volume mounts,
   Service selectors and target ports, NetworkPolicy ports;
3. the configuration files against the manifests: the collector's and
   Jaeger's pipelines use only components they define, listen on the ports
   the containers declare and export to a Service that exists; Grafana's
   datasources point at existing Services (uid "prometheus" for the
   dashboard) and its dashboard path is where the dashboard is mounted;
   Prometheus's config and rules are where its arguments say;
4. the rules: their shape (groups, record/alert, expr, for, severity) and
   that they use only the shop's metric names, `up` and their own records;
5. Prometheus's service discovery, simulated: the scrape relabelling is
   applied to every pod template of each shop rendering (SHOP: the chart
   rendered with shop-values.yaml, the shop-overlay build) and of OBS.yaml;
   the "shop" job must keep exactly one target per service Deployment, on the
   metrics port, with namespace/pod/component labels, and nothing else
   (databases, migration Jobs); the "observability" job the collector and Jaeger;
6. NetworkPolicies of both sides together (with the repository's evaluator,
   deploy/checks/netpol.py): spans get from every service to the collector and
   on to Jaeger, Prometheus reaches every service's metrics port, Grafana its
   datasources, and nothing else reaches Prometheus or Grafana.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import promql  # noqa: E402

NS = "observability"
TOKEN_ALLOWED = {"prometheus"}
RESTRICTED_VOLUMES = {"configMap", "emptyDir", "secret", "projected", "downwardAPI",
                      "persistentVolumeClaim", "csi", "ephemeral"}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

errors: list[str] = []
oks: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


def load(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def name_of(o: dict) -> str:
    return f'{o["kind"]}/{o["metadata"]["name"]}'


def pod_spec(o: dict) -> dict | None:
    if o["kind"] in POD_KINDS:
        return o["spec"]["template"]["spec"]
    if o["kind"] == "CronJob":
        return o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(o: dict) -> dict:
    return o["spec"]["template"]["metadata"].get("labels") or {}


def container_ports(spec: dict) -> dict:
    return {p["name"]: p["containerPort"] for c in spec.get("containers", []) for p in c.get("ports") or [] if "name" in p}


def configmap_data(objs: list[dict], prefix: str) -> tuple[str, dict]:
    """(name, data) of the generated ConfigMap whose name is prefix-<hash>."""
    for o in objs:
        if o["kind"] == "ConfigMap" and re.fullmatch(re.escape(prefix) + r"(-[a-z0-9]{10})?", o["metadata"]["name"]):
            return o["metadata"]["name"], o.get("data") or {}
    fail(f"no ConfigMap {prefix}")
    return "", {}


def find(objs, kind, name):
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    return None


def service_port(objs, host_port: str) -> bool:
    """Is host:port (host = service, service.ns, service.ns.svc[.cluster.local]) a Service port in OBS?"""
    host, _, port = host_port.rpartition(":")
    parts = host.split(".")
    if len(parts) > 1 and parts[1] != NS:
        return False
    svc = find(objs, "Service", parts[0])
    return bool(svc) and any(str(p["port"]) == port for p in svc["spec"]["ports"])


def url_host_port(url: str) -> str:
    m = re.fullmatch(r"(?:[a-z]+://)?([^/:]+):(\d+)/?.*", url)
    return f"{m.group(1)}:{m.group(2)}" if m else url


# ------------------------------------------------------------------ 1 + 2

def check_workloads(objs: list[dict]) -> None:
    sas = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    cms = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    workloads = [o for o in objs if pod_spec(o) is not None]
    if not workloads:
        fail("no workloads rendered")
    for o in workloads:
        w = name_of(o)
        spec = pod_spec(o)
        app = pod_labels(o).get("app.kubernetes.io/name", "")
        if app in TOKEN_ALLOWED and spec.get("automountServiceAccountToken") is not True:
            fail(f"{w}: Prometheus needs automountServiceAccountToken: true for service discovery")
        sa = spec.get("serviceAccountName")
        if sa not in sas:
            fail(f"{w}: ServiceAccount {sa!r} is not rendered")
        elif sas[sa].get("automountServiceAccountToken") is not False:
            fail(f"ServiceAccount/{sa}: automountServiceAccountToken must be false (pods opt in)")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for v in volumes.values():
            kinds = set(v) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                fail(f"{w}: volume {v['name']} of type {sorted(kinds)} is not allowed by the restricted profile")
            if "configMap" in v and v["configMap"]["name"] not in cms:
                fail(f"{w}: volume {v['name']} refers to ConfigMap {v['configMap']['name']}, which is not rendered")
        ports = container_ports(spec)
        for c in spec.get("containers") or []:
            cw = f"{w} container {c['name']}"
            m = re.fullmatch(r"(?:[a-z0-9.-]+/)?[a-z0-9./_-]+:([A-Za-z0-9._-]+)", c.get("image", ""))
            version = (o["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
            if m and version is not None and version != m.group(1):
                fail(f"{w}: label app.kubernetes.io/version {version!r} differs from the image tag {m.group(1)!r}")
            if c.get("imagePullPolicy") not in ("IfNotPresent", None):
                fail(f"{cw}: imagePullPolicy {c.get('imagePullPolicy')} (IfNotPresent with a pinned tag)")
            for probe in ("readinessProbe", "livenessProbe"):
                p = c.get(probe) or {}
                port = (p.get("httpGet") or p.get("tcpSocket") or p.get("grpc") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    fail(f"{cw}: {probe} uses port {port!r}, which the container does not declare")
            for vm in c.get("volumeMounts") or []:
                if vm["name"] not in volumes:
                    fail(f"{cw}: mounts {vm['name']}, which is not a volume")
            for ef in c.get("envFrom") or []:
                if "configMapRef" in ef and ef["configMapRef"]["name"] not in cms:
                    fail(f"{cw}: envFrom ConfigMap {ef['configMapRef']['name']} is not rendered")
    oks.append(f"{len(workloads)} workloads: own ServiceAccounts without token (Prometheus mounts its own), restricted "
               f"volume types, image tags as their version labels, IfNotPresent, probes on declared ports")

    # Services select a workload and target its declared ports.
    for s in (o for o in objs if o["kind"] == "Service"):
        sel = s["spec"].get("selector") or {}
        targets = [o for o in workloads if sel and all(pod_labels(o).get(k) == v for k, v in sel.items())]
        if not targets:
            fail(f"{name_of(s)}: selector {sel} matches no workload")
            continue
        ports = container_ports(pod_spec(targets[0]))
        numbers = set(ports.values())
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if (isinstance(tp, str) and tp not in ports) or (isinstance(tp, int) and tp not in numbers):
                fail(f"{name_of(s)}: port {p['name']} targets {tp!r}, which {name_of(targets[0])} does not declare")
    # NetworkPolicy named ports exist on the pods they select.
    for np_ in (o for o in objs if o["kind"] == "NetworkPolicy"):
        sel = np_["spec"].get("podSelector") or {}
        selected = [o for o in workloads if all(pod_labels(o).get(k) == v for k, v in (sel.get("matchLabels") or {}).items())]
        for rule in np_["spec"].get("ingress") or []:
            for p in rule.get("ports") or []:
                if isinstance(p.get("port"), str) and not any(p["port"] in container_ports(pod_spec(o)) for o in selected):
                    fail(f"{name_of(np_)}: ingress port {p['port']!r} is declared by none of the pods it selects")
    oks.append("Services, ServiceAccounts, ConfigMaps, mounts and NetworkPolicy ports all refer to what is rendered")


# ------------------------------------------------------------------ 3

def pipeline_components(cfg: dict, where: str) -> None:
    service = cfg.get("service") or {}
    for ext in service.get("extensions") or []:
        if ext not in (cfg.get("extensions") or {}):
            fail(f"{where}: service.extensions lists {ext!r}, which is not configured")
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        fail(f"{where}: no pipelines")
    for pname, p in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in p.get(kind) or []:
                if comp not in (cfg.get(kind) or {}):
                    fail(f"{where}: pipeline {pname} uses {kind[:-1]} {comp!r}, which is not configured")
        if not p.get("receivers") or not p.get("exporters"):
            fail(f"{where}: pipeline {pname} needs receivers and exporters")


def listens(where: str, endpoint: str, ports: dict, port_name: str) -> None:
    host, _, port = (endpoint or "").rpartition(":")
    if host not in ("0.0.0.0", "", "[::]"):
        fail(f"{where}: listens on {endpoint!r}; other pods reach it only on 0.0.0.0")
    if ports.get(port_name) != int(port or 0):
        fail(f"{where}: listens on port {port}, but the container's port {port_name!r} is {ports.get(port_name)}")


def otel_config(objs: list[dict], app: str, configmap: str, file: str, health) -> tuple[dict, dict] | None:
    """The configuration of Deployment `app` in the OpenTelemetry Collector's
    format (the collector's and Jaeger 2's): components defined, OTLP, health
    (health(config): its endpoint) and telemetry on the declared ports, and
    --config at the mounted file. (config, container ports); None if missing."""
    _, data = configmap_data(objs, configmap)
    d = find(objs, "Deployment", app)
    if not d:
        fail(f"no Deployment {app}")
    if not d or not data:
        return None
    spec = pod_spec(d)
    ports = container_ports(spec)
    cfg = yaml.safe_load(data[file])
    w = f"{app}/{file}"
    pipeline_components(cfg, w)
    otlp = cfg["receivers"]["otlp"]["protocols"]
    for proto in ("grpc", "http"):
        listens(f"{w} otlp {proto}", otlp[proto]["endpoint"], ports, f"otlp-{proto}")
    listens(f"{w} health", health(cfg), ports, "health")
    prom = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    listens(f"{w} telemetry", f'{prom["host"]}:{prom["port"]}', ports, "metrics")
    args = spec["containers"][0].get("args") or []
    mount = next(m["mountPath"] for m in spec["containers"][0]["volumeMounts"] if m["name"] == "config")
    if f"--config={mount}/{file}" not in args:
        fail(f"{app}: args {args} do not point at {mount}/{file}")
    return cfg, ports


def check_configs(objs: list[dict]) -> None:
    def deployment(name):
        d = find(objs, "Deployment", name)
        if not d:
            fail(f"no Deployment {name}")
            return {}, {}
        return pod_spec(d), container_ports(pod_spec(d))

    # OpenTelemetry Collector
    got = otel_config(objs, "otel-collector", "otel-collector-config", "collector.yaml",
                      lambda cfg: cfg["extensions"]["health_check"]["endpoint"])
    if got:
        cfg, _ = got
        w = "otel-collector/collector.yaml"
        traces = cfg["service"]["pipelines"]["traces"]
        for exp in traces["exporters"]:
            ep = cfg["exporters"][exp].get("endpoint", "")
            if not service_port(objs, url_host_port(ep)):
                fail(f"{w}: exporter {exp} sends to {ep!r}, which is no Service port here")
        if "memory_limiter" in traces.get("processors", []) and traces["processors"][0] != "memory_limiter":
            fail(f"{w}: memory_limiter must be the first processor")

    # Jaeger
    got = otel_config(objs, "jaeger", "jaeger-config", "config.yaml",
                      lambda cfg: cfg["extensions"]["healthcheckv2"]["http"]["endpoint"])
    if got:
        cfg, ports = got
        w = "jaeger/config.yaml"
        backends = cfg["extensions"]["jaeger_storage"]["backends"]
        for where, store in (("jaeger_query.storage.traces", cfg["extensions"]["jaeger_query"]["storage"]["traces"]),
                             ("jaeger_storage_exporter.trace_storage", cfg["exporters"]["jaeger_storage_exporter"]["trace_storage"])):
            if store not in backends:
                fail(f"{w}: {where} is {store!r}, not one of the backends {sorted(backends)}")
        if "memory" not in next(iter(backends.values())):
            fail(f"{w}: the storage backend is not in-memory")
        if ports.get("http-query") != 16686:
            fail("jaeger: the UI port (http-query) must be 16686, jaeger_query's default")

    # Grafana
    _, ds_data = configmap_data(objs, "grafana-datasources")
    _, prov_data = configmap_data(objs, "grafana-dashboard-providers")
    _, dash_data = configmap_data(objs, "grafana-dashboards")
    spec, ports = deployment("grafana")
    if ds_data and prov_data and dash_data and spec:
        c = spec["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        provisioning = env.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
        if mounts.get("datasources") != f"{provisioning}/datasources":
            fail("grafana: datasources ConfigMap is not mounted at <provisioning>/datasources")
        if mounts.get("dashboard-providers") != f"{provisioning}/dashboards":
            fail("grafana: dashboard providers ConfigMap is not mounted at <provisioning>/dashboards")
        dss = yaml.safe_load(ds_data["datasources.yaml"])["datasources"]
        uids = {d["uid"]: d for d in dss}
        if uids.get("prometheus", {}).get("type") != "prometheus":
            fail("grafana/datasources.yaml: no Prometheus datasource with uid 'prometheus' (the dashboard's)")
        for d in dss:
            if not service_port(objs, url_host_port(d["url"])):
                fail(f"grafana/datasources.yaml: {d['name']} points at {d['url']}, which is no Service port here")
        provider_paths = [p["options"]["path"] for p in yaml.safe_load(prov_data["dashboards.yaml"])["providers"]]
        if mounts.get("dashboards") not in provider_paths:
            fail(f"grafana: dashboards are mounted at {mounts.get('dashboards')}, providers read {provider_paths}")
        home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
        if home and (Path(home).parent.as_posix() != mounts.get("dashboards") or Path(home).name not in dash_data):
            fail(f"grafana: home dashboard {home} is not a mounted dashboard file")
        writable = {mounts.get("data"), mounts.get("tmp")}
        if env.get("GF_PATHS_DATA", "/var/lib/grafana") not in writable or "/tmp" not in writable:
            fail("grafana: its data path and /tmp must be writable volumes")
        if env.get("GF_LOG_MODE") != "console":
            fail("grafana: GF_LOG_MODE must be console (no log files on a read-only root)")

    # Prometheus
    _, cfg_data = configmap_data(objs, "prometheus-config")
    _, rules_data = configmap_data(objs, "prometheus-rules")
    spec, ports = deployment("prometheus")
    if cfg_data and rules_data and spec:
        c = spec["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        args = c.get("args") or []
        if f"--config.file={mounts.get('config')}/prometheus.yml" not in args:
            fail(f"prometheus: --config.file does not point at the mounted prometheus.yml ({args})")
        if f"--storage.tsdb.path={mounts.get('data')}" not in args:
            fail("prometheus: --storage.tsdb.path is not the writable data volume")
        cfg = yaml.safe_load(cfg_data["prometheus.yml"])
        globbed = [Path(g) for g in cfg.get("rule_files") or []]
        for name in rules_data:
            path = Path(mounts.get("rules", "")) / name
            if not any(path.match(str(g)) for g in globbed):
                fail(f"prometheus: rules file {path} is not matched by rule_files {cfg.get('rule_files')}")
        if not any(Path(c["mountPath"]) == Path("/etc/prometheus/rules") for c in c["volumeMounts"]):
            fail("prometheus: rules are not mounted at /etc/prometheus/rules")
    oks.append("collector, Jaeger, Grafana and Prometheus configurations match their manifests "
               "(pipelines, listen ports, exporter and datasource Services, mount paths)")


# ------------------------------------------------------------------ 4

DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")


def check_rules(path: str) -> None:
    doc = yaml.safe_load(Path(path).read_text())
    records = set()
    rules = []
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        fail(f"{path}: expected a mapping with a list 'groups'")
        return
    names = set()
    for g in doc["groups"]:
        if not g.get("name") or g["name"] in names:
            fail(f"{path}: group without a name or with a repeated name")
        names.add(g.get("name"))
        for r in g.get("rules") or []:
            rules.append(r)
            if ("record" in r) == ("alert" in r):
                fail(f"{path}: a rule needs exactly one of record and alert: {r}")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                fail(f"{path}: rule {r.get('record') or r.get('alert')} has no expr")
            if "record" in r:
                if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", r["record"]):
                    fail(f"{path}: bad record name {r['record']!r}")
                records.add(r["record"])
            else:
                if "for" in r and not DURATION.fullmatch(str(r["for"])):
                    fail(f"{path}: alert {r['alert']}: bad 'for' {r['for']!r}")
                if (r.get("labels") or {}).get("severity") not in ("warning", "critical", "info"):
                    fail(f"{path}: alert {r['alert']}: labels.severity must be warning, critical or info")
                if not (r.get("annotations") or {}).get("summary"):
                    fail(f"{path}: alert {r['alert']}: no summary annotation")
    allowed = promql.SHOP_METRICS | records | {"up"}
    for r in rules:
        for name in promql.metric_names(r.get("expr", "")) - allowed:
            fail(f"{path}: {r.get('record') or r.get('alert')} uses {name!r}, which is neither a shop metric nor a record")
        for metric, matchers in promql.selectors(r.get("expr", "")):
            labels = promql.labels_of(metric)
            for label in promql.matcher_labels(matchers) if labels else []:
                if label not in labels:
                    fail(f"{path}: {r.get('record') or r.get('alert')}: {metric} has no label {label!r}")
    oks.append(f"rules: {len(rules)} rules well formed, only shop metrics, up and their own records")


# ------------------------------------------------------------------ 5

def sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def relabel(labels: dict, configs: list[dict]) -> dict | None:
    labels = dict(labels)
    for c in configs:
        action = c.get("action", "replace")
        src = ";".join(labels.get(s, "") for s in c.get("source_labels") or [])
        regex = re.compile(r"^(?:" + c.get("regex", "(.*)") + r")$")
        m = regex.match(src)
        if action == "keep" and not m:
            return None
        if action == "drop" and m:
            return None
        if action == "replace" and m:
            repl = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", c.get("replacement", "$1"))
            value = m.expand(repl)
            if value:
                labels[c["target_label"]] = value
            else:
                labels.pop(c["target_label"], None)
        if action not in ("keep", "drop", "replace"):
            fail(f"relabel action {action} is not simulated")
    return {k: v for k, v in labels.items() if not k.startswith("__") or k == "__address__"}


def pod_targets(objs: list[dict], default_ns: str):
    """Discovery labels of every (pod, container port) the pod templates would have."""
    for o in objs:
        spec = pod_spec(o)
        if spec is None:
            continue
        ns = o["metadata"].get("namespace", default_ns)
        labels = pod_labels(o)
        pod = f'{o["metadata"]["name"]}-0'
        base = {"__meta_kubernetes_namespace": ns, "__meta_kubernetes_pod_name": pod,
                "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_node_name": "node-1",
                "__meta_kubernetes_pod_ready": "true"}
        for k, v in labels.items():
            base["__meta_kubernetes_pod_label_" + sanitize(k)] = v
            base["__meta_kubernetes_pod_labelpresent_" + sanitize(k)] = "true"
        for c in spec.get("containers") or []:
            for p in c.get("ports") or [{}]:
                t = dict(base)
                t["__meta_kubernetes_pod_container_name"] = c["name"]
                if p:
                    t["__address__"] = f"10.0.0.1:{p['containerPort']}"
                    t["__meta_kubernetes_pod_container_port_name"] = p.get("name", "")
                    t["__meta_kubernetes_pod_container_port_number"] = str(p["containerPort"])
                else:
                    t["__address__"] = "10.0.0.1"
                yield o, ns, labels, t


def discovered(job: dict, objs: list[dict], default_ns: str) -> list[tuple[dict, dict]]:
    out = []
    for sd in job.get("kubernetes_sd_configs") or []:
        if sd.get("role") != "pod":
            fail(f"job {job['job_name']}: role {sd.get('role')} is not simulated")
            continue
        nss = sd.get("namespaces") or {}
        for o, ns, labels, t in pod_targets(objs, default_ns):
            if nss.get("own_namespace") and ns != NS and not nss.get("names"):
                continue
            if nss.get("names") and ns not in nss["names"]:
                continue
            ok = True
            for sel in sd.get("selectors") or []:
                for term in (sel.get("label") or "").split(","):
                    if term and "=" in term:
                        k, v = term.split("=", 1)
                        ok &= labels.get(k.strip()) == v.strip()
            if not ok:
                continue
            kept = relabel(t, job.get("relabel_configs") or [])
            if kept is not None:
                out.append((o, kept))
    return out


def check_scrapes(obs: list[dict], shops: dict[str, list[dict]], chart_values: dict) -> None:
    _, data = configmap_data(obs, "prometheus-config")
    if not data:
        return
    cfg = yaml.safe_load(data["prometheus.yml"])
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    if "shop" not in jobs:
        fail("prometheus.yml: no job 'shop'")
        return
    metrics_port = ((chart_values.get("ports") or {}).get("metrics")) or 9090
    for name, objs in shops.items():
        services = {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"
                    and pod_labels(o).get("app.kubernetes.io/name") == "shop"}
        if not services:
            fail(f"{name}: no shop Deployments rendered")
            continue
        targets = discovered(jobs["shop"], objs + obs, "shop")
        got = {}
        for o, t in targets:
            if o["kind"] != "Deployment" or o["metadata"]["name"] not in services:
                fail(f"{name}: job shop would scrape {name_of(o)} ({t['__address__']}), which is not a shop service")
                continue
            if o["metadata"]["name"] in got:
                fail(f"{name}: job shop scrapes {name_of(o)} twice")
            got[o["metadata"]["name"]] = t
        for svc in sorted(services - set(got)):
            fail(f"{name}: job shop would not scrape Deployment/{svc}")
        for svc, t in got.items():
            component = pod_labels(find(objs, "Deployment", svc))["app.kubernetes.io/component"]
            if t["__address__"] != f"10.0.0.1:{metrics_port}":
                fail(f"{name}: Deployment/{svc} is scraped at {t['__address__']}, not on port {metrics_port}")
            for k, want in (("namespace", "shop"), ("component", component), ("job", None), ("pod", None)):
                if k == "job":
                    continue
                if k not in t or (want and t[k] != want):
                    fail(f"{name}: Deployment/{svc} target has {k}={t.get(k)!r}, want {want or 'set'}")
            if "service" in t:
                fail(f"{name}: a 'service' target label would rename the metrics' own service label")
        oks.append(f"scrape simulation ({name}): job shop keeps exactly {sorted(got)} on port {metrics_port} "
                   f"with namespace/pod/component labels; databases and migration Jobs dropped")
    if "observability" in jobs:
        got = sorted(o["metadata"]["name"] for o, _ in discovered(jobs["observability"], obs, NS))
        if got != ["jaeger", "otel-collector"]:
            fail(f"job observability would scrape {got}, want jaeger and otel-collector")
        else:
            oks.append("scrape simulation: job observability keeps the collector's and Jaeger's own metrics")


# ------------------------------------------------------------------ 6

def check_network(netpol_path: str | None, obs: list[dict], shops: dict[str, list[dict]]) -> None:
    if not netpol_path or not Path(netpol_path).is_file():
        print(f"  SKIP NetworkPolicy reachability: the evaluator {netpol_path} is not there")
        return
    spec = importlib.util.spec_from_file_location("netpol", netpol_path)
    netpol = importlib.util.module_from_spec(spec)
    sys.modules["netpol"] = netpol
    spec.loader.exec_module(netpol)

    def endpoints(objs, default_ns):
        eps = {}
        for o in objs:
            s = pod_spec(o)
            if s is None:
                continue
            ns = o["metadata"].get("namespace", default_ns)
            ports = [(p.get("name", ""), p["containerPort"], p.get("protocol", "TCP"))
                     for c in s.get("containers") or [] for p in c.get("ports") or []]
            eps[o["metadata"]["name"]] = netpol.pod(o["metadata"]["name"], ns, pod_labels(o), ports)
        return eps

    def policies(objs, default_ns):
        out = []
        for o in objs:
            if o["kind"] == "NetworkPolicy":
                o = dict(o)
                o["metadata"] = dict(o["metadata"])
                o["metadata"].setdefault("namespace", default_ns)
                out.append(o)
        return out

    obs_eps = endpoints(obs, NS)
    stranger = netpol.pod("stranger", "default", {"app": "stranger"}, [])
    for name, objs in shops.items():
        eps = {**endpoints(objs, "shop"), **obs_eps}
        pols = policies(objs, "shop") + policies(obs, NS)
        services = [e for n, e in eps.items() if e.namespace == "shop" and any(
            o["kind"] == "Deployment" and o["metadata"]["name"] == n for o in objs)]
        expect = []
        for s in services:
            expect.append((s, eps["otel-collector"], 4317, True, "service -> collector OTLP"))
            expect.append((eps["prometheus"], s, s.port_number("http-metrics") or 9090, True, "Prometheus -> metrics port"))
            expect.append((s, eps["prometheus"], 9090, False, "service -> Prometheus"))
        for n, e in eps.items():
            if e.namespace == "shop" and e not in services:  # databases, migration Jobs
                expect.append((e, eps["otel-collector"], 4317, False, "non-service shop pod -> collector"))
        expect += [
            (eps["otel-collector"], eps["jaeger"], 4317, True, "collector -> Jaeger OTLP"),
            (eps["grafana"], eps["prometheus"], 9090, True, "Grafana -> Prometheus"),
            (eps["grafana"], eps["jaeger"], 16686, True, "Grafana -> Jaeger query"),
            (eps["prometheus"], eps["otel-collector"], 8888, True, "Prometheus -> collector metrics"),
            (eps["prometheus"], eps["jaeger"], 8888, True, "Prometheus -> Jaeger metrics"),
            (stranger, eps["prometheus"], 9090, False, "other pod -> Prometheus"),
            (stranger, eps["grafana"], 3000, False, "other pod -> Grafana"),
            (stranger, eps["jaeger"], 4317, False, "other pod -> Jaeger OTLP"),
            (stranger, eps["otel-collector"], 4317, False, "other pod -> collector"),
        ]
        bad = 0
        for src, dst, port, want, what in expect:
            got = netpol.connects(pols, src, dst, port)
            if got != want:
                bad += 1
                fail(f"{name}: {what}: {src.name} -> {dst.name}:{port} is {'allowed' if got else 'denied'}, "
                     f"should be {'allowed' if want else 'denied'}")
        if not bad:
            oks.append(f"NetworkPolicies ({name} + observability): {len(expect)} paths as intended "
                       f"(spans in, scrapes out, datasources; nothing else into Prometheus, Grafana, Jaeger)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--observability", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--shop", action="append", default=[], help="NAME=RENDER.yaml of the shop (namespace shop)")
    ap.add_argument("--chart-values", help="the chart's values.yaml (ports.metrics)")
    ap.add_argument("--netpol")
    args = ap.parse_args()

    obs = load(args.observability)
    for o in obs:
        if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding") and o["metadata"].get("namespace") != NS:
            fail(f"{name_of(o)} is not in namespace {NS}")
    check_workloads(obs)
    check_configs(obs)
    check_rules(args.rules)
    shops = {}
    for s in args.shop:
        name, _, path = s.partition("=")
        shops[name] = load(path)
    values = yaml.safe_load(Path(args.chart_values).read_text()) if args.chart_values else {}
    if shops:
        check_scrapes(obs, shops, values)
        check_network(args.netpol, obs, shops)
    for o in oks:
        print(f"  ok   {o}")
    for e in errors:
        print(f"  FAIL {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
