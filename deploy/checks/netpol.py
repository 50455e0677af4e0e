"""A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics).

Answers "may this endpoint open a TCP/UDP connection to that one on this port?"
from the rendered NetworkPolicies alone, the way a conforming CNI decides:
a pod selected by any policy with Ingress (Egress) in its policyTypes is
isolated in that direction, and then only traffic that some rule of some
policy selecting it allows gets through; a connection needs both the
sender's egress and the receiver's ingress. It cannot tell whether a cluster's
CNI enforces policies at all, nor how it treats traffic from the node
(kubelet probes), which most CNIs always allow.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels + named ports) or, with ip set, an address outside the cluster."""

    name: str
    namespace: str = ""
    labels: tuple = ()
    ports: tuple = ()  # (name, number, protocol)
    ip: str = ""

    @property
    def label_map(self) -> dict:
        return dict(self.labels)

    def port_number(self, port) -> int | None:
        if isinstance(port, int):
            return port
        for name, number, _ in self.ports:
            if name == port:
                return number
        return None


def pod(name: str, namespace: str, labels: dict, ports: list | None = None) -> Endpoint:
    return Endpoint(name, namespace, tuple(sorted(labels.items())), tuple(ports or ()))


def outside(name: str, ip: str) -> Endpoint:
    return Endpoint(name, ip=ip)


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """metav1.LabelSelector; an empty selector matches everything."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _peer_matches(peer: dict, policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not other.ip:
            return False  # pod IPs are not what ipBlock is meant for; treat as no match
        net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        addr = ipaddress.ip_address(other.ip)
        if addr not in net:
            return False
        return not any(addr in ipaddress.ip_network(c) for c in peer["ipBlock"].get("except") or [])
    if other.ip:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], other.label_map)
    return True


def _ports_match(ports: list | None, target: Endpoint, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        number = target.port_number(p["port"])
        end = p.get("endPort", number)
        if number is not None and number <= port <= end:
            return True
    return False


def _types(policy: dict) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


def _allowed(policies: list[dict], subject: Endpoint, other: Endpoint, port: int, protocol: str, direction: str) -> bool:
    """Does `subject` (a pod) allow this traffic in `direction` ("Ingress" or "Egress")?"""
    if subject.ip:
        return True  # outside the cluster: no policy applies
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", subject.namespace) == subject.namespace
        and selector_matches(p["spec"].get("podSelector"), subject.label_map)
        and direction in _types(p)
    ]
    if not selecting:
        return True
    key, peer_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    # Ports of an egress rule are the receiver's; of an ingress rule, the subject's own.
    port_owner = subject if direction == "Ingress" else other
    for p in selecting:
        ns = p["metadata"].get("namespace", subject.namespace)
        for rule in p["spec"].get(key) or []:
            if not _ports_match(rule.get("ports"), port_owner, port, protocol):
                continue
            peers = rule.get(peer_key)
            if not peers or any(_peer_matches(peer, ns, other) for peer in peers):
                return True
    return False


def connects(policies: list[dict], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    return _allowed(policies, src, dst, port, protocol, "Egress") and _allowed(
        policies, dst, src, port, protocol, "Ingress"
    )
