"""Test hosts on one machine: Linux network namespaces joined by a bridge (root and iproute2 needed).

    with NetnsHosts(2) as hosts:            # namespaces with 10.213.0.2, 10.213.0.3
        hosts.gateway_ip                    # 10.213.0.1: this (root) namespace, on the bridge
        hosts.popen(0, ["python", ...])     # a process inside namespace 0

Only addresses inside namespaces this helper makes are used, and everything is removed on exit.
"""
from __future__ import annotations

import os
import subprocess
import uuid


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


def can_make_namespaces() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    name = f"fanout-probe-{uuid.uuid4().hex[:6]}"
    res = _ip("netns", "add", name, check=False)
    if res.returncode != 0:
        return False, f"'ip netns add' refused: {res.stderr.strip() or res.returncode}"
    _ip("netns", "del", name, check=False)
    return True, ""


class NetnsHosts:
    SUBNET = "10.213.0"

    def __init__(self, n: int) -> None:
        tag = uuid.uuid4().hex[:4]
        self.bridge = f"fobr{tag}"
        self.names = [f"fanout-{tag}-{k}" for k in range(n)]
        self.veths = [f"fo{tag}h{k}" for k in range(n)]
        self.gateway_ip = f"{self.SUBNET}.1"
        self.ips = [f"{self.SUBNET}.{k + 2}" for k in range(n)]
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> "NetnsHosts":
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for name, veth, ip in zip(self.names, self.veths, self.ips):
                _ip("netns", "add", name)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("-n", name, "addr", "add", f"{ip}/24", "dev", "eth0")
                _ip("-n", name, "link", "set", "eth0", "up")
                _ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def popen(self, k: int, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.names[k], *cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, **kw)
        self._procs.append(p)
        return p

    def __exit__(self, *exc) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for name in self.names:
            _ip("netns", "del", name, check=False)
        for veth in self.veths:
            _ip("link", "del", veth, check=False)
        _ip("link", "del", self.bridge, check=False)
