#!/usr/bin/env python3
"""The chart's secrets Job, run on this machine: its three containers in order.

    secrets_job.py run RENDERED.yaml --out MADE.yaml [--objects EXISTING.yaml ...]
    secrets_job.py test RENDERED.yaml --old-release OLD.yaml
    secrets_job.py kubectl ARGS...     (what the steps call instead of kubectl)

`run` takes the Job, its script ConfigMap and its Role from RENDERED.yaml
(`helm template` of helm/shop) and runs each container's command
(secrets.sh read, generate, write) with the environment and files the kubelet
would give it (rendered.materialise: mount paths moved under a temporary
directory), this machine's sh and openssl in place of the images', and this
script in place of kubectl: it keeps the namespace's objects as files
(seeded with EXISTING, the objects an admin made), answers exactly the calls
secrets.sh makes (get -o name|jsonpath, create -f, replace -f) as the API
server would, and refuses with Forbidden whatever the rendered Role does not
allow. It checks what the Job made (every planned Secret with its keys,
passwords of 48 hex characters all different, each public key the SPKI of
its private key) and writes those objects to MADE.yaml, for the checks that
need a rendering's Secrets (assert_policy, check_config, notes, kube_play).

`test` runs the Job of RENDERED.yaml in the situations that matter:
  1. run twice: the second run only reads; every object stays byte for byte;
  2. a signing key's Secret deleted (rotation): a new key, the public-key
     ConfigMap replaced to match; every other object unchanged;
  3. the objects a release of the old chart left (OLD.yaml): not one Secret
     made or changed; the public keys are those of the old private keys;
  4. controls: a Role without `get` on one Secret, and a key Secret without
     private.pem, make the Job fail.

What it cannot prove: that the images hold what the steps call (sh, openssl,
kubectl, base64, cmp, sed; busybox in both), and how a real API server and
RBAC answer; deploy/kind/ does that on a real cluster.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
import rendered  # noqa: E402

NAMESPACE = "shop"
RESOURCES = {"secret": "secrets", "configmap": "configmaps"}


# ------------------------------------------------------------------ the kubectl stand-in


class Store:
    """A namespace's Secrets and ConfigMaps, one YAML file each, and the calls made."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, kind: str, name: str) -> Path:
        return self.root / kind.lower() / f"{name}.yaml"

    def get(self, kind: str, name: str) -> dict | None:
        p = self.path(kind, name)
        return yaml.safe_load(p.read_text()) if p.exists() else None

    def put(self, obj: dict) -> None:
        p = self.path(obj["kind"], obj["metadata"]["name"])
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(obj, sort_keys=True))

    def objects(self) -> dict[str, bytes]:
        return {f"{p.parent.name}/{p.stem}": p.read_bytes() for p in sorted(self.root.glob("*/*.yaml"))}

    def calls(self) -> list[str]:
        p = self.root / "calls"
        return p.read_text().splitlines() if p.exists() else []


def allowed(role: dict, verb: str, resource: str, name: str) -> bool:
    for rule in role.get("rules") or []:
        if "" not in rule.get("apiGroups", []) or resource not in rule.get("resources", []) or verb not in rule.get("verbs", []):
            continue
        names = rule.get("resourceNames")
        # A rule with resourceNames never matches create: the name is not known to RBAC then.
        if not names or (verb != "create" and name in names):
            return True
    return False


def kubectl(argv: list[str]) -> int:
    store = Store(Path(os.environ["STUB_STORE"]))
    role = yaml.safe_load((store.root / "role.yaml").read_text())
    with open(store.root / "calls", "a") as log:
        log.write(" ".join(argv) + "\n")
    if argv[:2] != ["--namespace", NAMESPACE]:
        print(f"kubectl stand-in: expected --namespace {NAMESPACE} first: {argv}", file=sys.stderr)
        return 2
    args = argv[2:]

    def forbidden(verb: str, resource: str, name: str) -> int:
        print(f'Error from server (Forbidden): {resource} "{name}" is forbidden: cannot {verb} {resource} in the namespace "{NAMESPACE}"', file=sys.stderr)
        return 1

    if args[:1] == ["get"] and len(args) >= 5 and args[1] in RESOURCES and "-o" in args:
        kind, name, out = args[1], args[2], args[args.index("-o") + 1]
        if not allowed(role, "get", RESOURCES[kind], name):
            return forbidden("get", RESOURCES[kind], name)
        obj = store.get(kind, name)
        if obj is None:
            if "--ignore-not-found" in args:
                return 0
            print(f'Error from server (NotFound): {RESOURCES[kind]} "{name}" not found', file=sys.stderr)
            return 1
        m = re.fullmatch(r"jsonpath=\{\.data\.(.+)\}", out)
        if out == "name":
            print(f"{kind}/{name}")
        elif m:
            sys.stdout.write(str((obj.get("data") or {}).get(m.group(1).replace("\\.", "."), "")))
        else:
            print(f"kubectl stand-in: output {out} is not supported", file=sys.stderr)
            return 2
        return 0
    if args[:1] in (["create"], ["replace"]) and args[1:2] == ["-f"] and len(args) == 3:
        obj = yaml.safe_load(Path(args[2]).read_text())
        kind, name = obj["kind"].lower(), obj["metadata"]["name"]
        verb = "create" if args[0] == "create" else "update"
        if kind not in RESOURCES:
            print(f"kubectl stand-in: kind {kind} is not supported", file=sys.stderr)
            return 2
        if not allowed(role, verb, RESOURCES[kind], name):
            return forbidden(verb, RESOURCES[kind], name)
        exists = store.get(kind, name) is not None
        if verb == "create" and exists:
            print(f'Error from server (AlreadyExists): {RESOURCES[kind]} "{name}" already exists', file=sys.stderr)
            return 1
        if verb == "update" and not exists:
            print(f'Error from server (NotFound): {RESOURCES[kind]} "{name}" not found', file=sys.stderr)
            return 1
        store.put(obj)
        print(f"{kind}/{name} {'created' if verb == 'create' else 'replaced'}")
        return 0
    print(f"kubectl stand-in: call not supported (secrets.sh must not need it): {argv}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------ the Job


def job_of(docs: list[dict]) -> dict | None:
    for d in docs:
        if d["kind"] == "Job" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "secrets":
            return d
    return None


def plan_of(docs: list[dict], job: dict) -> list[list[str]]:
    cm = rendered.find(docs, "ConfigMap", job["metadata"]["name"])
    return [line.split() for line in cm["data"]["plan"].splitlines() if line.strip()]


def run_job(docs: list[dict], store: Store, role: dict | None = None) -> tuple[bool, str]:
    """Runs the Job's containers in order against store; (succeeded, their output)."""
    job = job_of(docs)
    role = role or rendered.find(docs, "Role", job["spec"]["template"]["spec"]["serviceAccountName"])
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / "role.yaml").write_text(yaml.safe_dump(role))
    (store.root / "calls").write_text("")
    pod = rendered.pod_template(job)
    output = []
    with tempfile.TemporaryDirectory(prefix="secrets-job-") as tmp:
        bindir = Path(tmp) / "bin"
        bindir.mkdir()
        (bindir / "kubectl").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" kubectl "$@"\n')
        (bindir / "kubectl").chmod(0o755)
        for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]:
            argv, env = rendered.materialise(docs, pod, c, Path(tmp) / "root")
            env.update(PATH=f"{bindir}:/usr/bin:/bin", STUB_STORE=str(store.root), PYTHONDONTWRITEBYTECODE="1")
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
            output.append(f"[{c['name']}] {r.stdout}{r.stderr}".strip())
            if r.returncode != 0:
                output.append(f"[{c['name']}] exit {r.returncode}")
                return False, "\n".join(output)
    return True, "\n".join(output)


def public_key(private_pem: bytes) -> bytes:
    return subprocess.run(["openssl", "pkey", "-pubout"], input=private_pem, capture_output=True, check=True).stdout


def secret_value(obj: dict, key: str) -> bytes:
    return base64.b64decode((obj.get("data") or {}).get(key, ""))


def check_made(docs: list[dict], job: dict, store: Store, made: set[str] | None = None) -> list[str]:
    """Problems with what the plan promises in store; passwords the Job made
    (in `made`, "secret/NAME"; default all) must be 48 hex characters, all different."""
    problems, passwords = [], []
    for line in plan_of(docs, job):
        what, name, rest = line[0], line[1], line[2:]
        if what == "password":
            obj = store.get("secret", name)
            if obj is None or sorted((obj.get("data") or {})) != sorted(rest):
                problems.append(f"Secret {name}: want keys {rest}, got {obj and sorted(obj.get('data') or {})}")
                continue
            for key in rest:
                value = secret_value(obj, key).decode()
                passwords.append(value)
                if (made is None or f"secret/{name}" in made) and not re.fullmatch(r"[0-9a-f]{48}", value):
                    problems.append(f"Secret {name}: {key} is not 48 hex characters")
        elif what == "key":
            obj = store.get("secret", rest[0])
            if obj is None or not secret_value(obj, "private.pem").startswith(b"-----BEGIN PRIVATE KEY-----"):
                problems.append(f"Secret {rest[0]}: no PKCS#8 private.pem")
        elif what == "public-keys":
            cm = store.get("configmap", name)
            if cm is None or sorted(cm.get("data") or {}) != sorted(f"{i}.pem" for i in rest):
                problems.append(f"ConfigMap {name}: want {rest}, got {cm and sorted(cm.get('data') or {})}")
                continue
            keys = {line[1]: line[2] for line in plan_of(docs, job) if line[0] == "key"}
            for issuer in rest:
                have = cm["data"][f"{issuer}.pem"].encode()
                if issuer in keys:
                    want = public_key(secret_value(store.get("secret", keys[issuer]), "private.pem"))
                else:
                    want = rendered.data_of(rendered.find(docs, "ConfigMap", job["metadata"]["name"]))[f"{issuer}.pem"]
                if have != want:
                    problems.append(f"ConfigMap {name}: {issuer}.pem is not the public key of the issuer's key")
                elif issuer in keys and not have.startswith(b"-----BEGIN PUBLIC KEY-----"):
                    problems.append(f"ConfigMap {name}: {issuer}.pem is not an SPKI PUBLIC KEY PEM")
    if len(set(passwords)) != len(passwords):
        problems.append("two passwords are the same")
    return problems


def seed(store: Store, objects: list[dict]) -> None:
    for o in objects:
        if o["kind"] in ("Secret", "ConfigMap"):
            o = dict(o)
            if "stringData" in o:  # as the API server stores it
                o["data"] = {**(o.get("data") or {}), **{k: base64.b64encode(str(v).encode()).decode() for k, v in o.pop("stringData").items()}}
            store.put(o)


# ------------------------------------------------------------------ commands


def cmd_run(args: argparse.Namespace) -> int:
    docs = rendered.load_file(args.rendered)
    name = Path(args.rendered).name
    job = job_of(docs)
    if job is None:
        args.out.write_text("")
        print(f"  ok   {name}: no secrets Job (every key and password supplied)")
        return 0
    existing = [d for f in args.objects for d in rendered.load_file(f)]
    with tempfile.TemporaryDirectory(prefix="secrets-store-") as tmp:
        store = Store(Path(tmp))
        seed(store, existing)
        before = set(store.objects())
        good, out = run_job(docs, store)
        if not good:
            print(f"  FAIL {name}: the secrets Job failed:\n{out}")
            return 1
        made_names = {k for k in store.objects() if k not in before}
        problems = check_made(docs, job, store, made_names)
        made = [store.get(*k.split("/", 1)) for k in sorted(made_names)]
    args.out.write_text(yaml.safe_dump_all(made, sort_keys=False))
    return report.finish(problems, name, f"the secrets Job made {', '.join(o['kind'] + ' ' + o['metadata']['name'] for o in made)}")


def cmd_test(args: argparse.Namespace) -> int:
    docs = rendered.load_file(args.rendered)
    job = job_of(docs)
    if job is None:
        print(f"  FAIL {args.rendered}: no secrets Job rendered")
        return 1
    plan = plan_of(docs, job)
    keys = {line[1]: line[2] for line in plan if line[0] == "key"}
    public = next(line[1] for line in plan if line[0] == "public-keys")
    writes = re.compile(r" (create|replace) ")
    problems: list[str] = []
    oks: list[str] = []

    def expect(cond: bool, ok: str, bad: str) -> None:
        (oks if cond else problems).append(ok if cond else bad)

    with tempfile.TemporaryDirectory(prefix="secrets-test-") as tmp:
        # 1. twice
        store = Store(Path(tmp) / "twice")
        good, out = run_job(docs, store)
        first = store.objects()
        good2, out2 = run_job(docs, store)
        expect(good and good2 and not check_made(docs, job, store), "run twice: both succeed, everything planned is there",
               f"run twice: {check_made(docs, job, store)}\n{out}\n{out2}")
        expect(store.objects() == first and not any(writes.search(c) for c in store.calls()),
               f"run twice: the second run only reads ({len(store.calls())} gets); all {len(first)} objects byte for byte the same",
               f"run twice: the second run wrote: {[c for c in store.calls() if writes.search(c)]}")

        # 2. rotation of the storefront's key
        secret = keys["storefront"]
        old_key = secret_value(store.get("secret", secret), "private.pem")
        store.path("secret", secret).unlink()
        before = store.objects()
        good, out = run_job(docs, store)
        after = store.objects()
        changed = sorted(k for k in after if after[k] != before.get(k))
        new_key = secret_value(store.get("secret", secret), "private.pem")
        expect(good and changed == sorted([f"configmap/{public}", f"secret/{secret}"]) and new_key != old_key and not check_made(docs, job, store),
               f"rotation: Secret {secret} deleted -> a new key, ConfigMap {public} replaced to match it, nothing else changed",
               f"rotation: changed {changed}, new key {'differs' if new_key != old_key else 'is the old one'}: {check_made(docs, job, store)}\n{out}")

        # 3. the objects a release of the old chart left
        store = Store(Path(tmp) / "old")
        seed(store, rendered.load_file(args.old_release))
        before = store.objects()
        good, out = run_job(docs, store)
        after = store.objects()
        kept = [k for k in before if k.startswith("secret/") and after.get(k) == before[k]]
        made = sorted(k for k in after if k not in before)
        problems_old = check_made(docs, job, store, set(made))
        expect(good and len(kept) == len([k for k in before if k.startswith("secret/")]) and made == [f"configmap/{public}"] and not problems_old,
               f"old chart's release: its {len(kept)} Secrets kept byte for byte, only ConfigMap {public} made, from the old keys",
               f"old chart's release: kept {kept}, made {made}: {problems_old}\n{out}")

        # 4. controls
        role = rendered.find(docs, "Role", job["spec"]["template"]["spec"]["serviceAccountName"])
        narrowed = yaml.safe_load(yaml.safe_dump(role))
        rule = next(r for r in narrowed["rules"] if r.get("resourceNames") and "secrets" in r["resources"])
        dropped = rule["resourceNames"].pop(0)
        good, out = run_job(docs, Store(Path(tmp) / "forbidden"), role=narrowed)
        expect(not good and "Forbidden" in out, f"control: without `get` on Secret {dropped} the Job fails (Forbidden)",
               f"control: the Job succeeded without `get` on Secret {dropped}:\n{out}")
        store = Store(Path(tmp) / "broken")
        seed(store, [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": keys["order"]}, "data": {"other": "eA=="}}])
        good, out = run_job(docs, store)
        expect(not good and "without private.pem" in out and store.get("secret", keys["order"])["data"] == {"other": "eA=="},
               f"control: a Secret {keys['order']} without private.pem makes the Job fail, and is left as it was",
               f"control: a key Secret without private.pem: the Job {'succeeded' if good else 'failed'}:\n{out}")
    for o in oks:
        print(f"  ok   {o}")
    return report.finish(problems, Path(args.rendered).name, "the secrets Job never replaces a Secret")


def main() -> int:
    if sys.argv[1:2] == ["kubectl"]:
        return kubectl(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("rendered")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--objects", action="append", default=[])
    t = sub.add_parser("test")
    t.add_argument("rendered")
    t.add_argument("--old-release", required=True)
    args = ap.parse_args()
    if shutil.which("openssl") is None:
        print("  FAIL openssl is not installed")
        return 1
    return cmd_run(args) if args.cmd == "run" else cmd_test(args)


if __name__ == "__main__":
    sys.exit(main())
