"""A tier of wslb nodes sharing their live counts through Redis (--cluster): the real wslb
binary on three simulated hosts (network namespaces, see netns.py), a real redis-server from
Debian on a fourth, wslb-echo backends on three more, WebSocket clients from the hub. Also the
bad-input cases on loopback: an unusable --cluster URL, a wrong password, a server that answers
garbage, at start and at runtime. Needs root (network namespaces)."""

import asyncio
import atexit
import json
import os
import shutil
import signal
import subprocess
import time

import websockets

import harness
import netns
from harness import log, wait_until

INTERVAL_MS = 500
INTERVAL = INTERVAL_MS / 1000
REDIS_IP = "198.18.1.1"
BACKEND_IPS = {1: "198.18.0.11", 2: "198.18.0.12", 3: "198.18.0.13"}
NODE_IPS = {"a": ("198.18.0.21", "198.18.1.21"), "b": ("198.18.0.22", "198.18.1.22"),
            "c": ("198.18.0.23", "198.18.1.23")}
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

_net = None


def network():
    """The simulated hosts, made once per run and removed at exit."""
    global _net
    if _net is None:
        assert os.geteuid() == 0, "the cluster tests need root for network namespaces"
        _net = netns.Network()
        atexit.register(_net.remove)
        _net.add_host("redis", control_ip=REDIS_IP)
        for i, address in BACKEND_IPS.items():
            _net.add_host(f"be{i}", data_ip=address)
        for node, (data_ip, control_ip) in NODE_IPS.items():
            _net.add_host(f"n{node}", data_ip=data_ip, control_ip=control_ip)
        _net.enter()
    return _net


def backend_address(i):
    return f"{BACKEND_IPS[i]}:9000"


def start_backends(net):
    for i in BACKEND_IPS:
        ready = os.path.join(harness.RUNTIME_DIR, f"be{i}.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        p = harness.start_process(
            net.run_argv(f"be{i}", [harness.ECHO, "--listen", backend_address(i), "--id", f"be{i}",
                                    "--ready-file", ready]),
            log_path=os.path.join(harness.RUNTIME_DIR, f"be{i}.log"))
        wait_until(lambda: os.path.exists(ready) or p.poll() is not None, 10, what=f"backend be{i}")
        assert p.poll() is None, f"backend be{i} exited"


class Redis:
    """A redis-server of its own (no persistence), in a namespace or on loopback."""

    def __init__(self, host="127.0.0.1", port=None, net=None, password=None):
        self.host, self.port = host, port or harness.free_port()
        self.net, self.password = net, password
        self.proc = None
        self.start()

    def start(self):
        argv = [REDIS_SERVER, "--bind", self.host, "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--dir", harness.RUNTIME_DIR]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.net:
            argv = self.net.run_argv("redis", argv)
        self.proc = harness.start_process(
            argv, log_path=os.path.join(harness.RUNTIME_DIR, f"redis-{self.port}.log"))
        wait_until(lambda: self.ping(), 10, interval=0.05, what="redis-server answering")

    def cli(self, *args, password=None):
        argv = ["redis-cli", "-h", self.host, "-p", str(self.port)]
        if password or self.password:
            argv += ["--no-auth-warning", "-a", password or self.password]
        if self.net:
            argv = self.net.run_argv("redis", argv)
        return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=10)

    def ping(self):
        return self.proc.poll() is None and self.cli("PING").stdout.strip() == "PONG"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    @property
    def url(self):
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}{self.host}:{self.port}"


class Node:
    """`wslb run --cluster` on one simulated host (or on loopback when `net` is None)."""

    def __init__(self, node_id, backends, net=None, cluster=None, listen=None, extra=()):
        self.node_id = node_id
        self.name = harness.unique_name(f"c{node_id}")
        listen = listen or f"{NODE_IPS[node_id][0]}:8080"
        self.url = f"ws://{listen}/"
        args = ["run", "--name", self.name, "--listen", listen, "--workers", "2",
                "--cluster", cluster or f"redis://{REDIS_IP}:6379", "--node-id", node_id,
                "--cluster-interval", f"{INTERVAL_MS}ms", *extra]
        for b in backends:
            args += ["--backend", backend_address(b) if isinstance(b, int) else b]
        argv = [harness.WSLB, *args]
        if net:
            argv = net.run_argv(f"n{node_id}", argv)
        self.log_path = os.path.join(harness.RUNTIME_DIR, f"{self.name}.log")
        self.proc = harness.start_process(argv, log_path=self.log_path)
        wait_until(self.ready, 15, what=f"node {node_id} running")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"node {self.node_id} exited {self.proc.returncode}:\n{self.log()}")
        s = self.status()
        return s and s["master_pid"] == self.proc.pid and \
            sum(1 for w in s["workers"] if w["state"] == "running") >= 2

    def status(self):
        r = harness.cli("status", "--name", self.name, "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def local(self, s=None):
        """This node's own live connections per backend address."""
        s = s or self.status()
        return {b["address"]: b["active"] for b in s["backends"]}

    def others(self, s=None):
        """The other nodes' counts per backend address, as this node last learnt them."""
        s = s or self.status()
        return {b["address"]: b["cluster_active"] for b in s["backends"]}

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def tier_setup():
    net = network()
    start_backends(net)
    redis = Redis(host=REDIS_IP, port=6379, net=net)
    return net, redis


async def connect(url, n):
    return [await websockets.connect(url, ping_interval=None, open_timeout=10) for _ in range(n)]


async def whoami(ws):
    await ws.send("whoami")
    return json.loads(await ws.recv())["id"]


async def all_echo(clients):
    """Every client still relays: a frame sent comes back. Returns how many did."""
    async def one(i, ws):
        await ws.send(f"still here {i}")
        return await asyncio.wait_for(ws.recv(), 10) == f"still here {i}"
    return sum(await asyncio.gather(*(one(i, ws) for i, ws in enumerate(clients))))


async def close_all(clients):
    await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def run_scenario(scenario, nodes, timeout=120):
    """Runs the coroutine `scenario`, then stops `nodes` whatever happened. The scenarios wait
    with harness.wait_until, which blocks their loop: the clients are idle meanwhile (no pings)."""
    try:
        harness.run_async(scenario, timeout=timeout)
    finally:
        for node in nodes:
            node.stop()


def sees(node, expected):
    """True once `node`'s view of the other nodes matches `expected` (address -> count)."""
    return node.others() == {backend_address(i): n for i, n in expected.items()}


def tier_counts(nodes):
    total = {}
    for node in nodes:
        for address, n in node.local().items():
            total[address] = total.get(address, 0) + n
    return total


# ---- the tier in namespaces ------------------------------------------------------------------

def test_uneven_clients_end_balanced_tier_wide():
    """600 clients reach node A, 100 node B, 50 node C. Before B and C get theirs, A's clients
    on backend 1 dropped by 150, so the tier is uneven (50/200/200): B and C must fill backend 1
    from the tier's view (per-node balancing would spread theirs evenly and leave 100/250/250)."""
    net, redis = tier_setup()
    nodes = [Node(n, [1, 2, 3], net=net) for n in "abc"]
    a, b, c = nodes

    async def scenario():
        on_a = await connect(a.url, 600)
        by_backend = {}
        for ws in on_a:
            by_backend.setdefault(await whoami(ws), []).append(ws)
        assert sorted(len(v) for v in by_backend.values()) == [200, 200, 200], \
            {k: len(v) for k, v in by_backend.items()}
        await close_all(by_backend["be1"][:150])
        wait_until(lambda: sees(b, {1: 50, 2: 200, 3: 200}), 10, what="B seeing A's 50/200/200")
        on_b = await connect(b.url, 100)
        b_local = b.local()
        log("B placed", b_local)
        wait_until(lambda: c.others() == {k: v + b_local[k] for k, v in a.local().items()},
                   10, what="C seeing A's and B's counts")
        on_c = await connect(c.url, 50)
        counts = tier_counts(nodes)
        log("tier-wide", counts, "C placed", c.local())
        mean = sum(counts.values()) / len(counts)
        assert sum(counts.values()) == 600
        for address, n in counts.items():
            assert abs(n - mean) <= 0.05 * mean, f"{address}: {n} vs mean {mean} ({counts})"
        # Per-node balancing would have put a third of B's 100 on backend 1.
        assert b_local[backend_address(1)] >= 90, b_local
        await close_all(on_a + on_b + on_c)

    run_scenario(scenario(), nodes, timeout=240)


def test_node_with_only_backend_1():
    """Node A knows only backend 1 and holds 100 connections there; node B (backends 1 and 2)
    places at least 90 of its next 100 on backend 2."""
    net, redis = tier_setup()
    a = Node("a", [1], net=net)
    b = Node("b", [1, 2], net=net)

    async def scenario():
        on_a = await connect(a.url, 100)
        wait_until(lambda: sees(b, {1: 100, 2: 0}), 10, what="B seeing A's 100 on backend 1")
        on_b = await connect(b.url, 100)
        placed = [await whoami(ws) for ws in on_b]
        log("B placed", {k: placed.count(k) for k in set(placed)})
        assert placed.count("be2") >= 90, placed.count("be2")
        await close_all(on_a + on_b)

    run_scenario(scenario(), [a, b], timeout=120)


def test_kill_9_node_share_disappears():
    """kill -9 of node A (master, workers, agent at once): its share leaves B's view within
    3 intervals + 1 s; a restarted A replaces its snapshot (a new boot) instead of adding to it."""
    net, redis = tier_setup()
    a = Node("a", [1, 2], net=net)
    b = Node("b", [1, 2], net=net)

    async def scenario():
        on_a = await connect(a.url, 100)
        wait_until(lambda: sees(b, {1: 50, 2: 50}), 10, what="B seeing A's 100")
        a.kill9()
        killed = time.monotonic()
        limit = 3 * INTERVAL + 1
        while True:
            s = b.status()
            if s["cluster"]["nodes_seen"] == 0 and set(b.others(s).values()) == {0}:
                break
            assert time.monotonic() - killed <= limit, \
                f"A's share still in B's view {time.monotonic() - killed:.2f}s after kill -9: {s['cluster']}"
            await asyncio.sleep(0.05)
        log(f"A's share left B's view {time.monotonic() - killed:.2f}s after kill -9")
        await close_all(on_a)

        restarted = Node("a", [1, 2], net=net)
        on_a = await connect(restarted.url, 20)
        wait_until(lambda: sees(b, {1: 10, 2: 10}), 10, what="B seeing the restarted A's 20")
        restarted.kill9()
        again = Node("a", [1, 2], net=net)  # at once: the old key has not expired yet
        wait_until(lambda: sees(b, {1: 0, 2: 0}) and b.status()["cluster"]["nodes_seen"] == 1,
                   10, what="B seeing only the newest A")
        again.stop()
        await close_all(on_a)

    run_scenario(scenario(), [a, b], timeout=120)


def outage_scenario(net, a, b, break_link, repair_link, cut_node):
    """Shared by the Redis-stopped and the partition tests: 90 held clients on each of A and B,
    the link broken, 60 new clients on `cut_node` during the outage, the link repaired."""
    async def scenario():
        held = await connect(a.url, 90)
        wait_until(lambda: sees(b, {1: 30, 2: 30, 3: 30}), 10, what="B seeing A's 90")
        held += await connect(b.url, 90)
        wait_until(lambda: sees(a, {1: 30, 2: 30, 3: 30}), 10, what="A seeing B's 90")
        before = cut_node.local()
        break_link()
        # Remote figures age out: the cut node balances on its own counts, says so.
        wait_until(lambda: cut_node.status()["cluster"]["link"] == "unreachable" and
                   set(cut_node.others().values()) == {0}, 3 * INTERVAL + 5,
                   what="the cut node's remote figures aging out")
        s = cut_node.status()["cluster"]
        log("during the outage:", s)
        assert s["nodes_seen"] == 0 and s["last_error"], s
        fresh = await connect(cut_node.url, 60)  # any refusal raises here
        after = cut_node.local()
        added = sorted(after[k] - before[k] for k in after)
        assert added == [20, 20, 20], f"local balancing during the outage: {before} -> {after}"
        repair_link()
        other = a if cut_node is b else b
        wait_until(lambda: sees(other, {1: 50, 2: 50, 3: 50}) and
                   sees(cut_node, {1: 30, 2: 30, 3: 30}),
                   6 * INTERVAL + 5, what="the views converging again")
        assert cut_node.status()["cluster"]["link"] == "connected"
        assert await all_echo(held + fresh) == len(held + fresh), "a connection was dropped"
        lines = [l for l in cut_node.log().splitlines() if "balancing on local counts" in l]
        assert len(lines) == 1, f"the outage was not logged exactly once: {lines}"
        await close_all(held + fresh)

    run_scenario(scenario(), [a, b], timeout=120)


def test_redis_stopped_mid_load():
    """Redis stopped under load: nothing dropped or refused, local balancing goes on, the
    outage is logged once and shown in status; Redis back: the views converge again."""
    net, redis = tier_setup()
    a = Node("a", [1, 2, 3], net=net)
    b = Node("b", [1, 2, 3], net=net)
    outage_scenario(net, a, b, redis.stop, redis.start, b)


def test_partition_from_redis():
    """Node A's link to Redis cut (packets vanish, no reset): the same as Redis stopped, for A;
    B no longer sees A. The link back: the views converge."""
    net, redis = tier_setup()
    a = Node("a", [1, 2, 3], net=net)
    b = Node("b", [1, 2, 3], net=net)
    outage_scenario(net, a, b, lambda: net.cut("na"), lambda: net.heal("na"), a)


# ---- bad input, on loopback ------------------------------------------------------------------

class GarbageServer:
    """Accepts TCP connections and answers anything with bytes that are not RESP."""

    def __init__(self, port=None):
        self.sock = harness.serve_loopback(self._one, port or 0, backlog=16)
        self.port = self.sock.getsockname()[1]

    def _one(self, conn):
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            except OSError:
                pass

    def close(self):
        self.sock.close()


def run_exit(*cluster_args):
    backend = harness.EchoBackend()
    r = subprocess.run([harness.WSLB, "run", "--name", harness.unique_name("bad"), "--listen",
                        f"127.0.0.1:{harness.free_port()}", "--backend", backend.address,
                        *cluster_args], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


def test_bad_cluster_url_exits_2_naming_the_flag():
    for url in ["http://127.0.0.1:6379", "redis://", "redis://h:99999", "redis://h:1/99",
                "redis://nopass@h:1"]:
        code, err = run_exit("--cluster", url)
        assert code == 2, (url, code, err)
        assert "--cluster: " in err and url in err, err
    code, err = run_exit("--cluster", "redis://127.0.0.1:1", "--node-id", "bad id")
    assert code == 2 and "--node-id: " in err, err
    code, err = run_exit("--cluster", "redis://127.0.0.1:1", "--cluster-interval", "1ms")
    assert code == 2 and "--cluster-interval: " in err, err


def test_wrong_password_and_garbage_server_refused_at_start():
    redis = Redis(password="right-one")
    code, err = run_exit("--cluster", f"redis://:wrong-one@127.0.0.1:{redis.port}")
    assert code == 3, (code, err)
    assert "--cluster" in err and "AUTH refused" in err and "WRONGPASS" in err, err
    assert "wrong-one" not in err, "the password was printed"
    garbage = GarbageServer()
    code, err = run_exit("--cluster", f"redis://127.0.0.1:{garbage.port}")
    garbage.close()
    assert code == 3, (code, err)
    assert "not a Redis server" in err, err


def test_unreachable_redis_at_start_is_not_fatal():
    port = harness.free_port()
    node = Node("solo", [harness.EchoBackend().address], cluster=f"redis://127.0.0.1:{port}",
                listen=f"127.0.0.1:{harness.free_port()}")
    try:
        assert "is not reachable now" in node.log()
        wait_until(lambda: node.status()["cluster"]["link"] == "unreachable", 10,
                   what="status showing Redis unreachable")
        redis = Redis(port=port)
        wait_until(lambda: node.status()["cluster"]["link"] == "connected", 10,
                   what="the agent connecting once Redis is up")
        assert redis.cli("EXISTS", "wslb:node:solo").stdout.strip() == "1"
    finally:
        node.stop()


def test_password_change_and_garbage_at_runtime_logged_and_survived():
    redis = Redis(password="right-one")
    backend = harness.EchoBackend()
    node = Node("solo", [backend.address], cluster=redis.url,
                listen=f"127.0.0.1:{harness.free_port()}")
    url = node.url

    async def relays():
        async with websockets.connect(url, open_timeout=5) as ws:
            await ws.send("hello")
            return await ws.recv() == "hello"

    try:
        wait_until(lambda: node.status()["cluster"]["link"] == "connected", 10, what="connected")
        redis.cli("CONFIG", "SET", "requirepass", "changed")
        redis.cli("CLIENT", "KILL", "TYPE", "normal", password="changed")
        wait_until(lambda: "WRONGPASS" in node.status()["cluster"]["last_error"], 10,
                   what="status showing the refused AUTH")
        assert node.status()["cluster"]["link"] == "unreachable"
        assert harness.run_async(relays(), timeout=10), "the node stopped relaying"
        time.sleep(6 * INTERVAL)  # several reconnect attempts, all refused
        lines = [l for l in node.log().splitlines() if "balancing on local counts" in l]
        assert len(lines) == 1, lines
        assert any("AUTH refused" in l and "WRONGPASS" in l for l in node.log().splitlines()), \
            "the refused AUTH was not logged"
        assert node.proc.poll() is None
        redis.cli("CONFIG", "SET", "requirepass", "right-one", password="changed")
        wait_until(lambda: node.status()["cluster"]["link"] == "connected", 10,
                   what="reconnected with the password back")

        redis.stop()
        garbage = GarbageServer(redis.port)
        try:
            wait_until(lambda: "Protocol error" in node.status()["cluster"]["last_error"], 10,
                       what="status showing the garbage answer")
            assert harness.run_async(relays(), timeout=10), "the node stopped relaying"
            assert node.proc.poll() is None
        finally:
            garbage.close()
    finally:
        node.stop()


if __name__ == "__main__":
    harness.main(globals())
