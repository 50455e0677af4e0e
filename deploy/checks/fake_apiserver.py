#!/usr/bin/env python3
"""A read-only stand-in for the Kubernetes API, enough for Helm's `lookup`.

    fake_apiserver.py PORT OBJECTS.yaml

Serves discovery (/version, /api, /apis, /api/v1) and GET of the Secrets and
ConfigMaps in OBJECTS.yaml (by namespace "shop" and name), 404 for anything
else, on 127.0.0.1:PORT. keep_test.sh renders the chart once, serves what it
rendered as "the cluster", and renders an upgrade against it with
`helm template --dry-run=server`, so that the chart's lookup finds them.
"""

from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {"name": n, "singularName": s, "namespaced": True, "kind": k, "verbs": ["get", "list"]}
        for n, s, k in (("secrets", "secret", "Secret"), ("configmaps", "configmap", "ConfigMap"))
    ],
}


def main() -> None:
    port = int(sys.argv[1])
    objects = {}
    for d in yaml.safe_load_all(Path(sys.argv[2]).read_text()):
        if d and d.get("kind") in ("Secret", "ConfigMap"):
            plural = d["kind"].lower() + "s"
            d.setdefault("metadata", {})["namespace"] = "shop"
            objects[(plural, d["metadata"]["name"])] = d

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/version":
                return self.reply(200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"})
            if path == "/api":
                return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
            if path == "/apis":
                return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            if path == "/api/v1":
                return self.reply(200, RESOURCES)
            m = re.fullmatch(r"/api/v1/namespaces/shop/(secrets|configmaps)/([^/]+)", path)
            if m and (m.group(1), m.group(2)) in objects:
                return self.reply(200, objects[(m.group(1), m.group(2))])
            return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                                    "message": f"{path} not found"})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
