#!/usr/bin/env python3
"""checkov over rendered manifests, with the skips of one file.

    checkov_scan.py [--control RENDERED.yaml] FILE.yaml...     (CHECKOV: the checkov binary)

Runs checkov (`--framework kubernetes`, every check it has) once over all
FILEs and fails on every failed check that deploy/checks/checkov-skips.yaml
does not excuse, and on every entry of that file that applies to one of the
FILEs but excused nothing (a stale skip). checkov covers the cluster admin's checklist of each pod:
root and high UIDs, privilege escalation, read-only root filesystem,
capabilities, seccomp, service account tokens, requests and limits, image
tags, probes, host namespaces, RBAC wildcards and escalation, ...

--control: a copy of one Deployment of RENDERED.yaml with that checklist
broken on purpose is scanned too, and each check in CONTROL (the checks that
stand in for the ones this project once wrote itself) must fail on it: if
checkov stopped catching one, this says so.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

SKIPS = Path(__file__).resolve().parent / "checkov-skips.yaml"
# What each check must catch in the control Deployment.
CONTROL = {
    "CKV_K8S_8": "no liveness probe",
    "CKV_K8S_9": "no readiness probe",
    "CKV_K8S_10": "no CPU request",
    "CKV_K8S_12": "no memory request",
    "CKV_K8S_13": "no memory limit",
    "CKV_K8S_14": "image tag latest",
    "CKV_K8S_16": "privileged",
    "CKV_K8S_19": "host network",
    "CKV_K8S_20": "allowPrivilegeEscalation",
    "CKV_K8S_22": "writable root filesystem",
    "CKV_K8S_23": "runs as root",
    "CKV_K8S_25": "added capability",
    "CKV_K8S_28": "NET_RAW not dropped",
    "CKV_K8S_31": "no seccomp profile",
    "CKV_K8S_37": "capabilities not dropped (ALL)",
    "CKV_K8S_38": "service account token mounted",
    "CKV_K8S_40": "low UID",
}


def control(rendered: Path, out: Path) -> None:
    """One Deployment of `rendered`, renamed, with every item of CONTROL broken."""
    dep = next(d for d in yaml.safe_load_all(rendered.read_text()) if d and d["kind"] == "Deployment")
    dep = copy.deepcopy(dep)
    dep["metadata"]["name"] = "control-insecure"
    spec = dep["spec"]["template"]["spec"]
    spec["automountServiceAccountToken"] = True
    spec["hostNetwork"] = True
    spec["securityContext"] = {"runAsUser": 0}
    for c in spec["containers"]:
        c["image"] = c["image"].rsplit(":", 1)[0] + ":latest"
        c["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": False,
                                "capabilities": {"add": ["NET_ADMIN"]}}
        for k in ("resources", "livenessProbe", "readinessProbe"):
            c.pop(k, None)
    out.write_text(yaml.safe_dump(dep, sort_keys=False))


def excuse(skips: list[dict], failure: dict) -> int | None:
    """Index of the first skip entry that excuses this failure."""
    name = Path(failure["file_path"]).name
    for i, s in enumerate(skips):
        if s["check"] != failure["check_id"]:
            continue
        if any(fnmatch.fnmatch(failure["resource"], p) for p in s.get("resources", ["*"])) and any(
            fnmatch.fnmatch(name, p) for p in s.get("files", ["*"])
        ):
            return i
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--control", type=Path)
    ap.add_argument("--skips", type=Path, default=SKIPS)
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    skips = yaml.safe_load(args.skips.read_text())
    problems = []
    for s in skips:
        if not s.get("check") or not str(s.get("why", "")).strip():
            problems.append(f"{args.skips.name}: an entry without check or why: {s}")

    with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
        files = [str(f) for f in args.files]
        if args.control:
            control(args.control, Path(tmp) / "control-insecure.yaml")
            files.append(str(Path(tmp) / "control-insecure.yaml"))
        r = subprocess.run(
            [os.environ.get("CHECKOV", "checkov"), "--framework", "kubernetes", "--quiet", "--compact",
             "--skip-download", "--output", "json", "--file", *files],
            capture_output=True, text=True, timeout=600,
        )
    try:
        results = json.loads(r.stdout)
    except json.JSONDecodeError:
        print(f"  FAIL checkov (exit {r.returncode}) printed no JSON:\n{r.stderr[-2000:]}")
        return 1
    results = results if isinstance(results, list) else [results]
    summary = Counter()
    used = Counter()
    caught: dict[str, set] = {}
    for res in results:
        for k in ("passed", "failed", "parsing_errors", "resource_count"):
            summary[k] += res["summary"].get(k, 0)
        for f in res["results"].get("failed_checks", []):
            if Path(f["file_path"]).name == "control-insecure.yaml":
                caught.setdefault(f["check_id"], set()).add(f["resource"])
                continue
            i = excuse(skips, f)
            if i is None:
                problems.append(f"{f['check_id']} {f['check_name']}: {f['resource']} in {Path(f['file_path']).name}")
            else:
                used[i] += 1
    if summary["parsing_errors"]:
        problems.append(f"checkov could not parse {summary['parsing_errors']} file(s)")
    names = [f.name for f in args.files]
    for i, s in enumerate(skips):
        applies = any(fnmatch.fnmatch(n, p) for n in names for p in s.get("files", ["*"]))
        if applies and not used[i]:
            problems.append(f"{args.skips.name}: the skip of {s['check']} {s.get('resources', '')} {s.get('files', '')} excuses nothing any more: delete it")
    if args.control:
        for check, what in CONTROL.items():
            if check not in caught:
                problems.append(f"control: checkov's {check} no longer catches {what}")
    excused = ", ".join(f"{skips[i]['check']} x{n}" for i, n in sorted(used.items()))
    ok = (f"{summary['passed']} checks passed on {summary['resource_count']} objects of {len(args.files)} file(s); "
          f"{sum(used.values())} failures excused by {args.skips.name} ({excused})")
    if args.control:
        ok += f"; the control Deployment failed all {len(CONTROL)} checks it must"
    return report.finish(problems, "checkov", ok)


if __name__ == "__main__":
    sys.exit(main())
