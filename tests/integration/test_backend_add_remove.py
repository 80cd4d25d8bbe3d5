"""Issue 13 point 1, the backend set at run time: `wslb backend add HOST:PORT[,weight=N]` and
`wslb backend remove HOST:PORT [--drain D]` on a running instance, synchronous and idempotent,
without a new generation; under a connect storm with zero failures; `--drain` closing the rest
within D; the changes kept in the state journal across reload, stop + run and an edited
configuration line; and the bad input."""

import asyncio
import json
import os
import re
import select
import signal
import socket
import threading
import time

import websockets
from prometheus_client.parser import text_string_to_metric_families

import admin_client as a
import harness as h


def ctl(inst, *args):
    return h.cli("backend", *args, "--name", inst.name)


def listed(inst, address):
    """The backend's entry in `status --json`, or None when its row is free."""
    for b in inst.status()["backends"]:
        if b["address"] == address:
            return b
    return None


def metric(admin_port, name, **labels):
    """The value of sample `name` with exactly `labels` on /metrics, parsed by Prometheus's own
    parser, or None when there is none."""
    code, _, text = a.get(admin_port, "/metrics")
    assert code == 200, code
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def run_storm(inst, per_thread, threads=4):
    failures, done = [], []
    workers = [threading.Thread(target=h.echo_storm, args=(inst.port, per_thread, failures, done))
               for _ in range(threads)]
    for t in workers:
        t.start()
    return workers, failures, done


def generation(inst):
    return max(w["generation"] for w in inst.status()["workers"] if w["state"] == "running")


def test_add_under_a_connect_storm_loses_nothing_and_every_worker_takes_it():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    admin = h.free_port()
    inst = h.Instance([b1], extra=["--mode", "tcp", "--admin", f"127.0.0.1:{admin}"])
    gen = generation(inst)
    threads, failures, done = run_storm(inst, 300)
    inst.wait_accepted(200, 60)
    r = ctl(inst, "add", f"{b2.address},weight=2", "--json")
    assert r.returncode == 0, (r.stdout, r.stderr)
    answer = json.loads(r.stdout)
    assert answer["address"] == b2.address and answer["weight"] == 2, answer
    assert answer["state"] == "active" and answer["admin_state"] == "ready", answer
    # Synchronous: once the command has answered, the table has the backend.
    entry = listed(inst, b2.address)
    assert entry["state"] == "active" and entry["weight"] == 2, entry
    for t in threads:
        t.join(120)
    assert len(done) == 4 and failures == [], failures[:5]
    s = inst.status()
    totals = {b["address"]: b["total"] for b in s["backends"]}
    h.log(f"add under a storm: {totals}")
    assert totals[b2.address] >= 100, totals
    assert metric(admin, "wslb_backend_weight", backend=b2.address) == 2
    assert metric(admin, "wslb_backend_admin_state", backend=b2.address, state="ready") == 1
    # Each finished connection is counted once it is closed on both sides.
    h.wait_until(lambda: metric(admin, "wslb_connections_total", backend=b2.address,
                                kind="tcp") == totals[b2.address], 10,
                 what="the added backend's finished connections in /metrics")
    # No new generation: the same workers took it, each of them (their log says so).
    assert generation(inst) == gen
    assert inst.log().count(f"backend {b2.address} added at run time") == inst.workers, inst.log()
    # Idempotent, and a conflicting line is refused.
    r = ctl(inst, "add", f"{b2.address},weight=2")
    assert r.returncode == 0 and "unchanged (already there" in r.stdout, r.stdout
    r = ctl(inst, "add", b2.address)
    assert r.returncode == 1 and "already there as " + b2.address + ",weight=2" in r.stderr, \
        r.stderr
    listing = json.loads(ctl(inst, "list", "--json").stdout)
    assert [b["address"] for b in listing] == [b1.address, b2.address], listing


def test_seventy_adds_and_removes_under_traffic_reuse_rows_and_worker_indices():
    # More changes than a worker has backend indices (64): each removal's row is freed once
    # empty, the next addition takes it, and every worker retires the old entry and gives its
    # index to the new backend.
    b1 = h.EchoBackend()
    others = [h.EchoBackend() for _ in range(3)]
    inst = h.Instance([b1], extra=["--mode", "tcp"])
    failures, done = [], []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            h.echo_storm(inst.port, 5, failures, done)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        for i in range(70):
            b = others[i % 3]
            assert ctl(inst, "add", b.address).returncode == 0
            # Every worker takes it, by its next pick or its housekeeping tick at the latest.
            h.wait_until(lambda: inst.log().count("added at run time") >= (i + 1) * inst.workers,
                         5, what="every worker to take the added backend")
            r = ctl(inst, "remove", b.address)
            assert r.returncode == 0, r.stderr
            h.wait_until(lambda: listed(inst, b.address) is None, 10, what="the row to be freed")
    finally:
        stop.set()
        t.join(60)
    assert failures == [], failures[:5]
    cycled = len(done) * 5
    log = inst.log()
    assert "cannot take backend" not in log
    # Each worker took more backends than it has indices: it reused retired ones.
    for slot in range(inst.workers):
        taken = re.findall(rf"worker {slot}: backend \S+ added at run time", log)
        assert len(taken) > 64, (slot, len(taken))
    # The last addition is picked like any backend.
    assert ctl(inst, "add", others[0].address).returncode == 0
    before = listed(inst, others[0].address)["total"]
    h.echo_storm(inst.port, 40, failures, done)
    assert failures == [], failures[:5]
    assert listed(inst, others[0].address)["total"] - before >= 10
    h.log(f"70 add/remove cycles: {cycled} connections meanwhile, none failed")


def test_an_added_backend_is_health_checked_at_once():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], extra=["--mode", "tcp", "--check-interval", "100ms",
                                   "--check-fall", "2"])
    nobody = f"127.0.0.1:{h.free_port()}"  # nothing listens there
    r = ctl(inst, "add", nobody)
    assert r.returncode == 0, r.stderr
    # Backends start up; the checker, which reads the rows, proves this one down.
    h.wait_until(lambda: listed(inst, nobody)["health"] == "down", 10,
                 what="the checker to take the added backend down")
    for _ in range(20):  # new connections go to the one that is up
        with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
            assert h.echo_through(s, b"up", shut_write=True)[0] == 2


def test_remove_under_a_connect_storm_loses_nothing_and_held_connections_stay():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    admin = h.free_port()
    inst = h.Instance([b1, b2], extra=["--mode", "tcp", "--admin", f"127.0.0.1:{admin}"])
    held = [socket.create_connection(("127.0.0.1", inst.port), timeout=10) for _ in range(6)]
    h.wait_until(lambda: listed(inst, b1.address)["active"] == 3, 10, what="3 held on b1")
    threads, failures, done = run_storm(inst, 300)
    inst.wait_accepted(200, 60)
    r = ctl(inst, "remove", b1.address)
    assert r.returncode == 0, r.stderr
    # The 3 held, and any of the storm's on b1 at that moment.
    left = re.search(r"removed: no new connections; (\d+) connections stay until they close",
                     r.stdout)
    assert left and int(left.group(1)) >= 3, r.stdout
    assert listed(inst, b1.address)["state"] == "removed"
    h.run_async(__import__("asyncio").sleep(0.2))  # connections picked just before the answer
    total_at_removal = listed(inst, b1.address)["total"]
    for t in threads:
        t.join(120)
    assert len(done) == 4 and failures == [], failures[:5]
    # The storm's last connections to b1 are uncounted once closed on both sides.
    h.wait_until(lambda: listed(inst, b1.address)["active"] == 3, 10, what="3 left on b1")
    entry = listed(inst, b1.address)
    assert entry["total"] == total_at_removal, "the removed backend got new connections"
    assert entry["state"] == "removed", entry
    for s in held:  # the established ones still relay, whichever backend holds them
        assert h.echo_through(s, b"still here")[0] == 10
    # A removed backend shows as draining, with its live connections, until its row is freed.
    assert metric(admin, "wslb_backend_connections", backend=b1.address) == 3
    assert metric(admin, "wslb_backend_admin_state", backend=b1.address, state="drain") == 1
    listing = ctl(inst, "list")
    assert "removed, draining" in listing.stdout and "1 removed still draining" in listing.stdout
    r = ctl(inst, "remove", b1.address)
    assert r.returncode == 0 and "unchanged (removed, 3 connections draining)" in r.stdout, \
        r.stdout
    for s in held:
        s.close()
    # Its row is freed once empty: gone from status and metrics' sources.
    h.wait_until(lambda: listed(inst, b1.address) is None, 10, what="the removed row to be freed")
    assert metric(admin, "wslb_backend_connections", backend=b1.address) is None
    r = ctl(inst, "remove", b1.address)
    assert r.returncode == 1 and f"no backend '{b1.address}'" in r.stderr, r.stderr


def wait_for_eofs(sockets, deadline):
    """Returns {socket: monotonic time} of the sockets that reached EOF (or a reset) before
    `deadline` (monotonic)."""
    closed, open_ = {}, list(sockets)
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(open_, [], [], max(0.0, deadline - time.monotonic()))
        for s in ready:
            try:
                data = s.recv(100)
            except OSError:
                data = b""
            if not data:
                closed[s] = time.monotonic()
                open_.remove(s)
    return closed


def test_remove_with_drain_closes_the_rest_within_the_time_given():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], extra=["--mode", "tcp"])
    held = [socket.create_connection(("127.0.0.1", inst.port), timeout=10) for _ in range(12)]
    h.wait_until(lambda: listed(inst, b1.address)["active"] == 6, 10, what="6 held on b1")
    started = time.monotonic()
    r = ctl(inst, "remove", b1.address, "--drain", "2s", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer == {"address": b1.address, "state": "removed", "active": 6,
                      "drain_ms": 2000}, answer
    closed = wait_for_eofs(held, started + 3.0)
    h.log("remove --drain 2s: closes at " +
          ", ".join(f"{t - started:.2f}" for t in sorted(closed.values())) + " s")
    assert len(closed) == 6, f"{len(closed)} of b1's 6 connections closed within 2 s + 1 s"
    for s in held:
        if s not in closed:
            assert h.echo_through(s, b"on b2")[0] == 5
    h.wait_until(lambda: listed(inst, b1.address) is None, 5, what="the drained row to be freed")
    for sock in held:
        sock.close()


def test_websockets_of_a_removed_backend_get_1012_over_the_drain_time():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2])
    out = {}

    async def scenario():
        conns = [await websockets.connect(inst.url) for _ in range(20)]
        for i, ws in enumerate(conns):
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"
        on_b1 = listed(inst, b1.address)["active"]
        started = time.monotonic()
        r = await asyncio.to_thread(ctl, inst, "remove", b1.address, "--drain", "2s")
        assert r.returncode == 0, r.stderr
        closes = []
        _, pending = await asyncio.wait(
            [asyncio.create_task(h.record_close(ws, started, closes)) for ws in conns],
            timeout=3.0)
        for task in pending:  # b2's: they stay open
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        out.update(on_b1=on_b1, closes=closes)
        for ws in conns:  # those on b2 still talk
            if ws.close_code is None:
                await ws.send("b2")
                assert await ws.recv() == "b2"
                await ws.close()

    h.run_async(scenario(), timeout=60)
    closes = out["closes"]
    h.log("remove --drain 2s, WebSocket: closes at " +
          ", ".join(f"{t:.2f}" for t, _ in sorted(closes)) + " s")
    assert out["on_b1"] >= 5 and len(closes) == out["on_b1"], (out["on_b1"], closes)
    assert {code for _, code in closes} == {1012}, closes


def test_a_restart_hands_tunnels_to_an_added_backend_over_to_the_new_workers():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1], extra=["--mode", "tcp"])
    assert ctl(inst, "add", b2.address).returncode == 0
    held = [socket.create_connection(("127.0.0.1", inst.port), timeout=10) for _ in range(8)]
    h.wait_until(lambda: listed(inst, b2.address)["active"] == 4, 10, what="4 held on b2")
    gen = generation(inst)
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    h.wait_until(lambda: all(w["state"] == "running" for w in inst.status()["workers"]), 10,
                 what="the old generation gone")
    assert generation(inst) == gen + 1
    for s in held:  # every tunnel moved and relays, the added backend's too
        assert h.echo_through(s, b"moved")[0] == 5
    assert listed(inst, b2.address)["active"] == 4
    assert sum(w["handed_in"] for w in inst.status()["workers"]) == 8
    for s in held:
        s.close()


def test_the_cluster_agents_count_an_added_backend_across_the_tier():
    from test_cluster import Redis  # a redis-server of its own, on loopback
    redis = Redis()
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    nodes = {node: h.Instance([b1], extra=["--mode", "tcp", "--cluster", redis.url,
                                           "--node-id", node, "--cluster-interval", "200ms"])
             for node in ("a", "b")}
    for inst in nodes.values():
        assert ctl(inst, "add", b2.address).returncode == 0
    held = [socket.create_connection(("127.0.0.1", nodes["b"].port), timeout=10)
            for _ in range(6)]
    h.wait_until(lambda: listed(nodes["b"], b2.address)["active"] == 3, 10, what="3 on b2 via b")
    # b's agent publishes the added row's count; a's agent writes it into a's added row.
    h.wait_until(lambda: listed(nodes["a"], b2.address)["cluster_active"] == 3, 10,
                 what="node a to count node b's connections on the added backend")
    for sock in held:
        sock.close()
    redis.stop()


def test_an_upgraded_master_keeps_the_runtime_changes():
    b1, b2, b3 = h.EchoBackend(), h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], extra=["--mode", "tcp"])
    assert ctl(inst, "add", b3.address).returncode == 0
    assert ctl(inst, "remove", b1.address).returncode == 0
    held = [socket.create_connection(("127.0.0.1", inst.port), timeout=10) for _ in range(4)]
    h.wait_until(lambda: listed(inst, b3.address)["active"] == 2, 10, what="2 held on b3")
    assert ctl(inst, "weight", b2.address, "3").returncode == 0  # an override rides along
    before = inst.status()["master_pid"]
    r = h.cli("upgrade", "--name", inst.name, timeout=60)
    assert r.returncode == 0 and "upgraded" in r.stdout, (r.stdout, r.stderr)
    try:
        s = inst.status()
        assert s["master_pid"] != before
        active = {b["address"] for b in s["backends"] if b["state"] == "active"}
        assert active == {b2.address, b3.address}, s["backends"]
        assert listed(inst, b2.address)["weight"] == 3
        for sock in held:  # handed over to the new master's workers
            assert h.echo_through(sock, b"kept")[0] == 4
        assert listed(inst, b3.address)["active"] == 2
    finally:
        for sock in held:
            sock.close()
        h.cli("stop", "--name", inst.name)


def test_the_journal_keeps_them_across_reload_stop_and_run_and_an_edited_line_wins():
    b1, b2, b3 = h.EchoBackend(), h.EchoBackend(), h.EchoBackend()
    name = h.unique_name("setjournal")
    config = os.path.join(h.RUNTIME_DIR, f"{name}.toml")
    h.write_config(config, [b1.address, b2.address])
    inst = h.Instance([], name=name, extra=["--config", config, "--mode", "tcp"])
    assert ctl(inst, "add", f"{b3.address},weight=3").returncode == 0
    assert ctl(inst, "remove", b1.address).returncode == 0
    assert ctl(inst, "drain", b3.address).returncode == 0  # an override on an added backend
    state_file = os.path.join(h.RUNTIME_DIR, f"{name}.state")
    journal = open(state_file).read()
    assert f"added\t{b3.address}\t{b3.address},weight=3\n" in journal, journal
    assert f"removed\t{b1.address}\t{b1.address},weight=1\n" in journal, journal

    def shows_the_changes():
        s = inst.status()
        active = {b["address"]: b for b in s["backends"] if b["state"] == "active"}
        assert set(active) == {b2.address, b3.address}, s["backends"]
        assert active[b3.address]["weight"] == 3
        assert active[b3.address]["admin_state"] == "drain"

    r = h.cli("reload", "--name", name)
    assert r.returncode == 0 and "dropped" not in r.stdout, r.stdout
    shows_the_changes()
    inst.stop()
    inst = h.Instance([], name=name, extra=["--config", config, "--mode", "tcp"])
    shows_the_changes()
    assert f"runtime change of backend {b3.address} applied" in inst.log()

    # The operator writes b3 into the file with another weight, and edits b1's line: the file
    # wins for both, and the reload says which runtime changes it dropped.
    h.write_config(config, [f"{b1.address},weight=2", b2.address, f"{b3.address},weight=5"])
    r = h.cli("reload", "--name", name)
    assert r.returncode == 0, r.stderr
    assert (f"runtime change dropped: {b3.address} (its addition: now configured as "
            f"{b3.address},weight=5)") in r.stdout, r.stdout
    assert (f"runtime change dropped: {b1.address} (its removal: the line changed: "
            f"{b1.address},weight=1 -> {b1.address},weight=2)") in r.stdout, r.stdout
    s = inst.status()
    assert inst.backend(s, b1.address)["state"] == "active"
    assert inst.backend(s, b1.address)["weight"] == 2
    assert inst.backend(s, b3.address)["weight"] == 5
    journal = open(state_file).read()
    assert "added\t" not in journal and "removed\t" not in journal, journal

    # `backend reset` undoes what is left: an addition goes, a removal comes back.
    b4 = h.EchoBackend()
    assert ctl(inst, "add", b4.address).returncode == 0
    assert ctl(inst, "remove", b2.address).returncode == 0
    r = ctl(inst, "reset")
    assert r.returncode == 0, r.stderr
    s = inst.status()
    assert inst.backend(s, b2.address)["state"] == "active"
    assert all(b["state"] != "active" for b in s["backends"] if b["address"] == b4.address)
    assert "added\t" not in open(state_file).read()


def test_add_and_remove_while_a_reload_starts_are_refused_and_change_nothing():
    """`backend add` and `backend remove` that reach the master while a reload's workers are
    starting are refused ("a reload is in progress") and change nothing: the reload commits with
    its own backend set, the state file records nothing, and the same commands succeed once it
    has finished. The commands go over the control socket right behind `reload` while the
    master is stopped (SIGSTOP), so all three wait in its backlog: it accepts and reads them in
    that order once it goes on, before the new workers can have said they are ready (sent one
    by one to a running master, a loaded machine could let it read the add first)."""
    b1, b2, b3 = h.EchoBackend(), h.EchoBackend(), h.EchoBackend()
    conf = os.path.join(h.RUNTIME_DIR, f"add-in-reload-{os.getpid()}.toml")
    h.write_config(conf, [b1, b2])
    inst = h.Instance([], extra=["--config", conf])
    path = os.path.join(h.RUNTIME_DIR, inst.name + ".sock")
    state_file = os.path.join(h.RUNTIME_DIR, inst.name + ".state")

    def send(command):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(20)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        return s

    def answer(s):
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        s.close()
        return reply.decode().strip().splitlines()[-1]

    gen = generation(inst)
    os.kill(inst.proc.pid, signal.SIGSTOP)
    try:
        reloading = send("reload")
        adding, removing = send(f"backend add {b3.address}"), send(f"backend remove {b2.address}")
    finally:
        os.kill(inst.proc.pid, signal.SIGCONT)
    added, removed, reloaded = answer(adding), answer(removing), answer(reloading)
    assert added == "error a reload is in progress; try again once it has finished", added
    assert removed == "error a reload is in progress; try again once it has finished", removed
    assert reloaded.startswith("ok "), reloaded
    h.wait_until(lambda: all(w["state"] == "running" and w["generation"] == gen + 1
                             for w in inst.status()["workers"]), 10, what="generation 2 alone")
    s = inst.status()
    assert sorted(b["address"] for b in s["backends"] if b["state"] == "active") == \
        sorted([b1.address, b2.address]), s["backends"]
    journal = open(state_file).read() if os.path.exists(state_file) else ""
    assert "added\t" not in journal and "removed\t" not in journal, journal
    # Nothing was left half-done: the same changes go through now.
    r = ctl(inst, "add", b3.address)
    assert r.returncode == 0, r.stderr
    r = ctl(inst, "remove", b2.address)
    assert r.returncode == 0, r.stderr
    assert sorted(b["address"] for b in inst.status()["backends"] if b["state"] == "active") == \
        sorted([b1.address, b3.address])
    inst.stop()


def test_bad_input_is_refused_saying_what_is_wrong():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], extra=["--mode", "tcp"])
    r = ctl(inst, "add", "nohost")
    assert r.returncode == 1 and "'nohost' has no port" in r.stderr, r.stderr
    r = ctl(inst, "add", "127.0.0.1:99999")
    assert r.returncode == 1 and "out of range" in r.stderr, r.stderr
    r = ctl(inst, "add", "127.0.0.1:9,weight=0")
    assert r.returncode == 1 and "weight=N with N in 1-1000" in r.stderr, r.stderr
    r = ctl(inst, "add", "127.0.0.1:9,colour=red", "--json")
    assert r.returncode == 1 and "is not weight=N" in r.stderr, r.stderr
    r = ctl(inst, "remove", "127.0.0.1:1")
    assert r.returncode == 1 and "no backend '127.0.0.1:1'" in r.stderr, r.stderr
    r = ctl(inst, "remove", b1.address)
    assert r.returncode == 1 and "is the last backend" in r.stderr, r.stderr
    r = ctl(inst, "remove", b1.address, "--drain", "soon")
    assert r.returncode == 2 and "--drain" in r.stderr, r.stderr
    r = ctl(inst, "add", "127.0.0.1:9", "--drain", "2s")
    assert r.returncode == 2 and "goes with 'remove' only" in r.stderr, r.stderr
    r = ctl(inst, "add")
    assert r.returncode == 1 and "usage" in r.stderr, r.stderr
    # None of it changed anything.
    s = inst.status()
    assert [b["address"] for b in s["backends"]] == [b1.address], s["backends"]


if __name__ == "__main__":
    h.main(globals())
