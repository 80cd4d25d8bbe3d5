"""Issue 14, the handover with several workers on each side: the tunnels of the old workers are
spread over the new ones by their load (also when the new ones already carry unequal loads),
and the accounting an operator reads (`connections`, `active`, `handed_over` / `handed_in`,
`handover_lost`) is exact after every step. Real binary, raw TCP clients (tcp mode) and a
third-party WebSocket client, loopback."""

import os
import signal
import socket

from prometheus_client.parser import text_string_to_metric_families

import admin_client as admin
import harness as h
from test_handover import ADMIN_TOKEN, _live_connections, _only_generation_left, _probe_all


def _connect(port, n):
    """n tunnels through wslb in tcp mode, each shown to echo once."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        got, _ = h.echo_through(s, f"hello {i}\n".encode())
        assert got == len(f"hello {i}\n"), i
        socks.append(s)
    return socks


def _generation_rows(status, gen):
    return [w for w in status["workers"] if w["generation"] == gen]


def _settled(inst, gen, open_count):
    """The status once generation `gen` alone is left and counts `open_count` connections, both
    per worker and per backend (a tunnel in flight between two workers is on neither side)."""
    def ready():
        s = _only_generation_left(inst, gen)
        if s and _live_connections(s) == open_count and \
                sum(b["active"] for b in s["backends"]) == open_count:
            return s
        return None
    return h.wait_until(ready, 60, 0.05, f"generation {gen} alone with {open_count} connections")


def closes_by_cause(port):
    """{cause: connections ended so far} from the admin listener's wslb_closes_total."""
    code, _, text = admin.get(port, "/metrics", ADMIN_TOKEN)
    assert code == 200, code
    return {sample.labels["cause"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "wslb_closes_total"}


def _spread_bound(total, workers):
    """How far from an even share a worker may be: a tenth of the share, plus 2 for the tunnels
    in flight while a sender looked at the table."""
    return total / workers / 10 + 2


def _assert_spread(rows, total, what):
    share = total / len(rows)
    counts = [w["connections"] for w in rows]
    assert sum(counts) == total, (what, counts)
    assert all(abs(c - share) <= _spread_bound(total, len(rows)) for c in counts), \
        (what, counts, share)
    return counts


def test_tunnels_spread_evenly_over_three_new_workers_through_restarts_and_a_reload():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    port = h.free_port()
    inst = h.Instance([b1, b2], workers=3,
                      extra=["--mode", "tcp", "--drain-timeout", "60s", "--admin",
                             f"127.0.0.1:{port}", "--admin-token", ADMIN_TOKEN])
    n = 300
    socks = _connect(inst.port, n)
    s = _settled(inst, inst.status()["generation"], n)
    spreads = [("start", [w["connections"] for w in s["workers"]])]
    for step in ("restart-workers", "reload", "restart-workers"):
        gen = s["generation"]
        r = h.cli(step, "--name", inst.name)
        assert r.returncode == 0, (step, r)
        s = _settled(inst, gen + 1, n)
        rows = _generation_rows(s, gen + 1)
        assert len(rows) == 3, rows
        spreads.append((step, _assert_spread(rows, n, step)))
        # Every tunnel moved (none drained), each once, and none was lost on the way.
        assert sum(w["handed_in"] for w in rows) == n, (step, rows)
        assert all(w["handed_over"] == 0 for w in rows), rows
        assert s["handover_lost"] == 0, s
        # Moving is not ending: nothing drained, timed out or closed on either side.
        assert set(closes_by_cause(port).values()) == {0}, (step, closes_by_cause(port))
    h.log(f"{n} tunnels over 3 workers (connections per worker): {spreads}")
    served, closed, silent = _probe_all(socks)
    assert (served, closed, silent) == (n, 0, []), (served, closed, silent[:5])
    # Each ends once, where it ended: closed by its client in the last generation.
    _settled(inst, s["generation"], 0)
    closes = closes_by_cause(port)
    assert closes["client"] == n and sum(closes.values()) == n, closes
    inst.stop()


def test_tunnels_even_out_new_workers_that_already_carry_unequal_loads():
    """Two old workers hold 300 tunnels; before they start handing over, one of the two new
    workers has taken 200 fresh connections and the other none (it was stopped meanwhile). Each
    sender, seeing 0 and 200, must not fill the empty one alone as if it were the only sender:
    the new workers end even (250 each), not 300 and 200."""
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=2, extra=["--mode", "tcp", "--drain-timeout", "60s"])
    old_count, fresh_count = 300, 200
    old_socks = _connect(inst.port, old_count)
    s0 = _settled(inst, inst.status()["generation"], old_count)
    gen = s0["generation"]
    senders = [w["pid"] for w in s0["workers"]]
    # The old workers are held still, so that their handover begins only when they run again.
    for pid in senders:
        os.kill(pid, signal.SIGSTOP)
    stopped = list(senders)
    try:
        r = h.cli("restart-workers", "--name", inst.name)
        assert r.returncode == 0, r
        new = [w for w in _generation_rows(inst.status(), gen + 1) if w["state"] == "running"]
        assert len(new) == 2, inst.status()["workers"]
        idle_one, busy_one = new[0]["pid"], new[1]["pid"]
        os.kill(idle_one, signal.SIGSTOP)
        stopped.append(idle_one)
        # A stopped worker is not waiting in the listener's queue: the other takes them all.
        fresh_socks = _connect(inst.port, fresh_count)
        loads = {w["pid"]: w["connections"] for w in inst.status()["workers"]}
        assert loads[busy_one] == fresh_count and loads[idle_one] == 0, loads
        os.kill(idle_one, signal.SIGCONT)
        stopped.remove(idle_one)
        for pid in senders:
            os.kill(pid, signal.SIGCONT)
        stopped.clear()
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    total = old_count + fresh_count
    s = _settled(inst, gen + 1, total)
    rows = _generation_rows(s, gen + 1)
    counts = _assert_spread(rows, total, "after the handover")
    moved = {w["pid"]: w["handed_in"] for w in rows}
    h.log(f"new workers at 0 and {fresh_count}, {old_count} handed over from 2 workers: "
          f"connections {counts}, handed in {moved}")
    assert sum(moved.values()) == old_count and s["handover_lost"] == 0, (moved, s)
    served, closed, silent = _probe_all(old_socks + fresh_socks)
    assert (served, closed, silent) == (total, 0, []), (served, closed, silent[:5])
    inst.stop()


def test_a_new_worker_that_stops_taking_tunnels_does_not_hold_the_handover_back():
    """An old worker passes 8,000 tunnels to two new ones; one new worker is stopped (SIGSTOP,
    as a hung process) once it has taken some. Its socket fills (a few thousand records); the
    sender runs ahead of it by a few dozen at most while it takes nothing, then, a second on,
    passes the rest to the other: the old generation is gone while the stopped one is still
    stopped, and once it runs again it takes in what was queued for it. Nothing is lost."""
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], workers=2, extra=["--mode", "tcp", "--drain-timeout", "60s"])
    n = 8000
    # One old worker takes them all (the other is stopped meanwhile): one sender, so that
    # enough records head for each receiver to fill its socket.
    idle = inst.worker_pids()[1]
    os.kill(idle, signal.SIGSTOP)
    try:
        socks = [socket.create_connection(("127.0.0.1", inst.port)) for _ in range(n)]
        s0 = h.wait_until(lambda: (lambda s: s if _live_connections(s) == n else None)(
            inst.status()), 60, 0.1, f"{n} connections")
    finally:
        os.kill(idle, signal.SIGCONT)
    gen = s0["generation"]
    senders = [w["pid"] for w in s0["workers"]]
    # The senders are held still until the new workers run, so that the handover starts after
    # the test is watching.
    for pid in senders:
        os.kill(pid, signal.SIGSTOP)
    victim = None
    try:
        r = h.cli("restart-workers", "--name", inst.name)
        assert r.returncode == 0, r
        victim = [w["pid"] for w in _generation_rows(inst.status(), gen + 1)][0]
        # Stopped as soon as it has taken a few tunnels in (its descriptors show them sooner
        # than its row can be read), so that thousands are still to come its way.
        before = len(os.listdir(f"/proc/{victim}/fd"))
        for pid in senders:
            os.kill(pid, signal.SIGCONT)
        h.wait_until(lambda: len(os.listdir(f"/proc/{victim}/fd")) > before + 10, 30, 0.0005,
                     "a few tunnels taken in")
        os.kill(victim, signal.SIGSTOP)
        stopped_with = [w["handed_in"] for w in _generation_rows(inst.status(), gen + 1)]
        h.wait_until(lambda: all(h.process_gone(p) for p in senders), 20, 0.1,
                     "the old generation gone while a new worker is stopped")
    finally:
        if victim:
            os.kill(victim, signal.SIGCONT)
    s = _settled(inst, gen + 1, n)
    rows = _generation_rows(s, gen + 1)
    h.log(f"a receiver stopped at handed_in {stopped_with}: in the end "
          f"{[(w['handed_in'], w['connections']) for w in rows]} (handed in, connections)")
    assert sum(w["handed_in"] for w in rows) == n and s["handover_lost"] == 0, s
    served, closed, silent = _probe_all(socks)
    assert (served, closed, silent) == (n, 0, []), (served, closed, silent[:5])
    inst.stop()


def test_a_reload_that_removes_a_backend_moves_the_other_tunnels_and_drains_its_own():
    """Two workers, tunnels to two backends; a reload keeps only one. In the same handover the
    kept backend's tunnels move (handed_in), the removed one's stay in the old workers and are
    closed at their drain deadline (closes by cause drain), none lost; `connections` and
    `active` count exactly what is open after each step."""
    kept, removed = h.EchoBackend(), h.EchoBackend()
    conf = os.path.join(h.RUNTIME_DIR, f"handover-remove-{os.getpid()}.toml")
    h.write_config(conf, [kept, removed])
    port = h.free_port()
    drain_s = 4
    inst = h.Instance([], workers=2,
                      extra=["--config", conf, "--mode", "tcp", "--drain-timeout", f"{drain_s}s",
                             "--admin", f"127.0.0.1:{port}", "--admin-token", ADMIN_TOKEN])
    n = 200
    socks = _connect(inst.port, n)
    s = _settled(inst, inst.status()["generation"], n)
    on_kept = inst.backend(s, kept.address)["active"]
    on_removed = inst.backend(s, removed.address)["active"]
    assert on_kept + on_removed == n and on_kept > 0 and on_removed > 0, s["backends"]
    gen = s["generation"]
    h.write_config(conf, [kept])
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, r
    # Before the drain deadline: the kept backend's tunnels are in the new workers, the removed
    # one's still in the old ones, and every one of them is counted once.
    moved = h.wait_until(
        lambda: (lambda st: st if sum(w["handed_in"] for w in _generation_rows(st, gen + 1)) ==
                 on_kept else None)(inst.status()), 10, 0.05, "the kept backend's tunnels moved")
    assert _live_connections(moved) == n, moved["workers"]
    assert sum(w["connections"] for w in _generation_rows(moved, gen)) == on_removed, \
        moved["workers"]
    new_rows = _generation_rows(moved, gen + 1)
    _assert_spread(new_rows, on_kept, "the kept backend's tunnels")
    assert set(closes_by_cause(port).values()) == {0}, closes_by_cause(port)
    # At the deadline the removed backend's tunnels are closed in the old workers.
    s = _settled(inst, gen + 1, on_kept)
    assert s["handover_lost"] == 0, s
    assert inst.backend(s, kept.address)["active"] == on_kept, s["backends"]
    closes = closes_by_cause(port)
    assert closes["drain"] == on_removed and sum(closes.values()) == on_removed, closes
    served, closed, silent = _probe_all(socks)
    assert (served, closed, silent) == (on_kept, on_removed, []), (served, closed, silent[:5])
    h.log(f"reload removing a backend: {on_kept} moved over "
          f"{[w['connections'] for w in new_rows]}, {on_removed} drained in {drain_s} s")
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
