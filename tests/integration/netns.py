"""Simulated hosts for the cluster tests: Linux network namespaces that a test creates and
removes itself, joined by bridges inside a hub namespace, with addresses from 198.18.0.0/15
(reserved for benchmarking: nothing on this machine or beyond routes it). Needs root.

Two networks, as a deployment often has:
  data     198.18.0.0/24  clients (the hub itself, .254), backends and wslb nodes
  control  198.18.1.0/24  Redis and the wslb nodes' agents
so that a node can be cut off from Redis alone (`cut`) while it keeps serving its clients.

The test process itself moves into the hub namespace (`enter`), so its sockets are the
clients; the `wslb` CLI keeps working from there (the table and control socket live in the
file system). Processes inside a host run under `ip netns exec`.
"""

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


class Network:
    def __init__(self):
        self.tag = f"wc{os.getpid() % 100000}"
        self.hub = f"{self.tag}-hub"
        self.hosts = {}      # name -> namespace name
        self.links = {}      # (host, network) -> hub-side interface name
        self._root_fd = None
        ip("netns", "add", self.hub)
        ip("-n", self.hub, "link", "set", "lo", "up")
        for bridge, address in (("br0", "198.18.0.254/24"), ("br1", None)):
            ip("-n", self.hub, "link", "add", bridge, "type", "bridge")
            ip("-n", self.hub, "link", "set", bridge, "up")
            if address:
                ip("-n", self.hub, "addr", "add", address, "dev", bridge)

    def add_host(self, name, data_ip=None, control_ip=None):
        """A namespace named after `name`, on the data and/or control network."""
        ns = f"{self.tag}-{name}"
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[name] = ns
        for network, bridge, address in (("d", "br0", data_ip), ("c", "br1", control_ip)):
            if not address:
                continue
            inside, outside = f"{network}0", f"{self.tag}{name[:3]}{network}"
            ip("-n", self.hub, "link", "add", outside, "type", "veth", "peer", "name", inside)
            ip("-n", self.hub, "link", "set", inside, "netns", ns)
            ip("-n", self.hub, "link", "set", outside, "master", bridge, "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            self.links[(name, network)] = outside
        return ns

    def run_argv(self, host, argv):
        """`argv` prefixed to run inside `host`."""
        return ["ip", "netns", "exec", self.hosts[host], *argv]

    def cut(self, host):
        """Takes `host`'s control link down at the hub: its packets to Redis vanish (no reset,
        no error), as in a real partition; its data link stays up."""
        ip("-n", self.hub, "link", "set", self.links[(host, "c")], "down")

    def heal(self, host):
        ip("-n", self.hub, "link", "set", self.links[(host, "c")], "up")

    def enter(self):
        """Moves this process (its main thread, where the tests run) into the hub."""
        self._root_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.hub}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def remove(self):
        if self._root_fd is not None:
            _setns(self._root_fd)
            os.close(self._root_fd)
            self._root_fd = None
        for ns in list(self.hosts.values()) + [self.hub]:
            ip("netns", "del", ns, check=False)
        self.hosts.clear()
