"""Issue 14, an upgrade across table layouts: `wslb upgrade --binary` to wslb-next-layout (the
same sources built with another layout version and its fields moved) and back. The new master
cannot read the old table: it rebuilds its own from the old master's state export, the old
workers hand their tunnels over into it, and the old table goes with the old master. Also what
every upgrade passes by descriptor: the table (checked), the admin listener (/metrics answers
throughout), and systemd's main pid. Real binaries, real clients, loopback."""

import asyncio
import json
import websockets
import os
import socket
import subprocess
import threading
import time

import admin_client as admin
import harness as h
from test_handover import _idle_still_open, _live_connections, _open_all, _scaled
from test_service import NotifySocket, start_notified
from test_tls import _pki, _s_client, _write_config

NEXT = os.path.join(h.BUILD_DIR, "wslb-next-layout")
NEXT_HANDOVER = os.path.join(h.BUILD_DIR, "wslb-next-handover")
ADMIN_TOKEN = "upgrade-layout"


def _status(binary, name):
    """`status --json` read by `binary` (a table is read by a wslb of its own layout), or None."""
    r = subprocess.run([binary, "status", "--name", name, "--json"], capture_output=True,
                       text=True, timeout=30)
    return json.loads(r.stdout) if r.returncode == 0 else None


def _upgrade(name, binary):
    return subprocess.run([h.WSLB, "upgrade", "--name", name, "--binary", binary],
                          capture_output=True, text=True, timeout=90)


class MetricsScraper:
    """Threads scraping /metrics in a loop until stop(): counts the answers and records every
    failure (a refused connection, a status other than 200, a page without backends)."""

    def __init__(self, port, token=None, threads=1):
        self.port, self.token = port, token
        self.ok = 0
        self.failed = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._scrape) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _scrape(self):
        while not self.done.is_set():
            try:
                status, _, body = admin.get(self.port, "/metrics", token=self.token, timeout=10)
                if status == 200 and "wslb_backend_connections" in body:
                    self.ok += 1
                else:
                    self.failed.append(status)
            except (OSError, AssertionError) as e:
                self.failed.append(repr(e))
            time.sleep(0.01)

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join()


def _settled(binary, name, master_pid, count):
    """The status once only the new master's generation is left and it counts `count`."""
    s = _status(binary, name)
    if not s or s["master_pid"] == master_pid:
        return None
    if any(w["state"] == "predecessor" for w in s["workers"]):
        return None
    if _live_connections(s) != count or sum(b["active"] for b in s["backends"]) != count:
        return None
    if any(b["inherited_active"] for b in s["backends"]):
        return None
    return s


def test_an_upgrade_to_another_layout_and_back_keeps_every_connection_and_the_state():
    assert os.access(NEXT, os.X_OK), f"{NEXT} is not built"
    b1, b2, b3 = h.EchoBackend(), h.EchoBackend(), h.EchoBackend()
    dead_port = h.free_port()  # nothing listens: its health checks fail
    admin_port = h.free_port()
    inst = h.Instance([b1, b2, f"127.0.0.1:{dead_port}"], workers=2,
                      extra=["--drain-timeout", "60s", "--check-interval", "200ms",
                             "--admin", f"127.0.0.1:{admin_port}",
                             "--admin-token", ADMIN_TOKEN])
    first = inst.status()
    # State that is not in the configuration: a backend added at run time, one drained.
    assert h.cli("backend", "add", b3.address, "--name", inst.name).returncode == 0
    assert h.cli("backend", "drain", b2.address, "--name", inst.name).returncode == 0
    h.wait_until(lambda: inst.backend(inst.status(), f"127.0.0.1:{dead_port}")["health"] ==
                 "down", 20, 0.1, "the dead backend down")
    echoing, idle = _scaled(1000), _scaled(500)
    total = echoing + idle
    steps = [(NEXT, "next layout"), (h.WSLB, "this layout")]
    report = {"steps": []}

    async def scenario():
        active = await _open_all(inst.url, echoing, "e", pause=0.2)
        resting = await _open_all(inst.url, idle, "i", pause=0)
        tasks = [asyncio.create_task(c.run()) for c in active]
        scraper = MetricsScraper(admin_port, ADMIN_TOKEN)
        try:
            for binary, label in steps:
                before = await asyncio.to_thread(
                    _status, h.WSLB if binary == NEXT else NEXT, inst.name)
                churn = h.Churn(inst.url, concurrency=6)
                storm = asyncio.create_task(churn.run())
                r = await asyncio.to_thread(_upgrade, inst.name, binary)
                assert r.returncode == 0, (label, r.stdout, r.stderr)
                assert "table rebuilt" in r.stdout, r.stdout
                s = await asyncio.to_thread(
                    h.wait_until,
                    lambda: _settled(binary, inst.name, before["master_pid"], total), 90, 0.2,
                    f"{total} connections counted once after the upgrade to the {label}")
                await asyncio.to_thread(
                    h.wait_until, lambda: h.process_gone(before["master_pid"]), 60, 0.1,
                    "the old master to exit")
                churn.stop.set()
                await storm
                report["steps"].append((label, churn.ok, len(churn.failures)))
                assert not churn.failures, (label, churn.failures[:5])
                assert s["layout"] == (first["layout"] if binary == h.WSLB else
                                       first["layout"] + 1000), (label, s["layout"])
                assert s["build_id"] != before["build_id"], (label, s["build_id"])
                assert all(w["build_id"] == s["build_id"] for w in s["workers"]), s["workers"]
                assert s["generation"] == before["generation"] + 1, s
                assert s["handover_lost"] == 0, s
                backends = {b["address"]: b for b in s["backends"]}
                assert backends[b3.address]["state"] == "active", backends
                assert backends[b2.address]["admin_state"] == "drain", backends
                dead = backends[f"127.0.0.1:{dead_port}"]
                assert dead["health"] == "down" and dead["check"]["last_error"], dead
                # The old table is gone with the old master; the record names the new one.
                assert len([p for p in os.listdir("/dev/shm")
                            if p.startswith(f"wslb.{os.getuid()}.{inst.name}.")]) == 1
                failures = [f for c in active for f in c.failures]
                assert not failures, (label, failures[:5])
                await asyncio.sleep(1)
        finally:
            await asyncio.to_thread(scraper.stop)
            report["scrapes"] = (scraper.ok, scraper.failed)
            for c in active:
                c.stop.set()
            await asyncio.gather(*tasks)
        report["messages"] = sum(c.sent for c in active)
        report["idle_bad"] = await _idle_still_open(resting)
        report["failures"] = [f for c in active for f in c.failures]
        for c in active + resting:
            await c.ws.close()

    h.run_async(scenario(), timeout=900)
    h.log(f"{echoing} echoing + {idle} idle to the next layout and back: "
          f"{report['messages']} messages; storms (step, ok, failed): {report['steps']}; "
          f"{report['scrapes'][0]} /metrics scrapes")
    assert not report["failures"], report["failures"][:5]
    assert not report["idle_bad"], report["idle_bad"][:5]
    assert not report["scrapes"][1], report["scrapes"][1][:5]
    assert report["scrapes"][0] > 0
    assert h.cli("stop", "--name", inst.name).returncode == 0


def test_a_tls_session_saved_before_resumes_after_upgrades_across_layouts():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    cfg = os.path.join(pki.dir, "wslb.toml")
    _write_config(cfg, backend.address, [alpha])
    inst = h.Instance([], workers=1, extra=["--config", cfg])
    session = os.path.join(pki.dir, "session.pem")
    r = _s_client(inst.port, "alpha.test", "-CAfile", pki.ca_cert, "-tls1_3",
                  "-sess_out", session)
    assert "New, TLSv1.3" in r.stdout.decode(), r.stdout.decode()[-2000:]
    for binary in (NEXT, h.WSLB):
        before = _status(h.WSLB if binary == NEXT else NEXT, inst.name)
        r = _upgrade(inst.name, binary)
        assert r.returncode == 0 and "table rebuilt" in r.stdout, (r.stdout, r.stderr)
        h.wait_until(lambda: h.process_gone(before["master_pid"]), 60, 0.1, "old master gone")
        r = _s_client(inst.port, "alpha.test", "-CAfile", pki.ca_cert, "-tls1_3",
                      "-sess_in", session)
        assert "Reused, TLSv1.3" in r.stdout.decode(), (binary, r.stdout.decode()[-2000:])
    s = inst.status()
    assert s["tls"]["resumed"] >= 1, s["tls"]
    assert h.cli("stop", "--name", inst.name).returncode == 0


def test_status_of_another_layout_says_which_and_the_old_table_goes_with_the_old_master():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1)
    before = inst.status()
    table = inst.table_path()
    # The other layout's CLI refuses this table saying what differs.
    r = subprocess.run([NEXT, "status", "--name", inst.name], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "layout version" in r.stderr, (r.stdout, r.stderr)
    r = _upgrade(inst.name, NEXT)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"layout {before['layout'] + 1000}, table rebuilt" in r.stdout, r.stdout
    after = _status(NEXT, inst.name)
    assert after["layout"] == before["layout"] + 1000, after
    assert inst.table_path() != table
    assert inst.proc.wait(60) == 0
    h.wait_until(lambda: not os.path.exists(table), 30, 0.1, "the old table removed")
    assert "rebuilt it as /dev/shm/" in inst.log(), inst.log()[-3000:]
    assert h.cli("stop", "--name", inst.name).returncode == 0


def test_an_upgrade_to_workers_of_another_handover_format_drains_and_says_so():
    assert os.access(NEXT_HANDOVER, os.X_OK), f"{NEXT_HANDOVER} is not built"
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=2, extra=["--drain-timeout", "2s"])
    before = inst.status()

    async def scenario():
        held = [await websockets.connect(inst.url, ping_interval=None) for _ in range(20)]
        since = time.monotonic()
        closes = []
        readers = [asyncio.create_task(h.record_close(ws, since, closes)) for ws in held]
        churn = h.Churn(inst.url, concurrency=4)
        storm = asyncio.create_task(churn.run())
        r = await asyncio.to_thread(_upgrade, inst.name, NEXT_HANDOVER)
        await asyncio.wait_for(asyncio.gather(*readers), 60)
        churn.stop.set()
        await storm
        return r, closes, churn

    r, closes, churn = h.run_async(scenario(), timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    # The answer says the old workers drain, and why.
    assert "its workers speak handover format 1005, these 5: this master's workers drain" in \
        r.stdout, r.stdout
    # They did: every held connection got the drain's 1001, none was handed over.
    assert sorted(code for _, code in closes) == [1001] * 20, closes
    assert not churn.failures, churn.failures[:5]
    h.wait_until(lambda: h.process_gone(before["master_pid"]), 60, 0.1, "the old master gone")
    log = inst.log()
    assert "cannot take tunnels (it speaks handover format 1005, this worker 5)" in log, log[-3000:]
    after = inst.status()
    assert after["generation"] == before["generation"] + 1 and after["handover_lost"] == 0
    assert sum(w["handed_in"] for w in after["workers"]) == 0, after["workers"]
    assert h.cli("stop", "--name", inst.name).returncode == 0


def test_a_successor_of_another_layout_killed_after_its_rebuild_leaves_the_old_instance_as_it_was():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=2)
    before = inst.status()
    table = inst.table_path()
    # A client still sending its request head stays with the old worker (only tunnels move),
    # so the old master is still there whenever the successor dies.
    slow_client = socket.create_connection(("127.0.0.1", inst.port))
    slow_client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    inst.wait_accepted(1, 10)
    result = {}
    upgrading = threading.Thread(target=lambda: result.setdefault("r", _upgrade(inst.name, NEXT)))
    upgrading.start()
    # The successor has created its table and rebuilt it: kill it there (before or just after
    # it reported ready: the old master takes the instance back then).
    h.wait_until(lambda: "rebuilt it as /dev/shm/" in inst.log(), 60, 0.01, "the rebuild")
    successor = int(inst.log().split("upgrade: started ")[1].split(" as pid ")[1].split()[0])
    os.kill(successor, 9)
    upgrading.join()
    h.wait_until(lambda: _back_to(inst, table), 60, 0.1,
                 "the old master serving its own table alone")
    r = result["r"]
    h.log(f"successor killed: upgrade exit {r.returncode}: {(r.stdout + r.stderr).strip()[:300]}")
    slow_client.close()
    after = inst.status()
    assert after["master_pid"] == before["master_pid"] == inst.proc.pid, after
    assert after["layout"] == before["layout"], after

    async def served():
        async with websockets.connect(inst.url) as ws:
            await ws.send("served")
            return await ws.recv()

    assert h.run_async(served(), timeout=30) == "served"
    assert h.cli("stop", "--name", inst.name).returncode == 0


def _back_to(inst, table):
    """True once the instance's record names `table` again and it is the user's only table of
    that instance in /dev/shm (the successor's rebuilt one removed)."""
    mine = [p for p in os.listdir("/dev/shm") if p.startswith(f"wslb.{os.getuid()}.{inst.name}.")]
    return inst.table_path() == table and mine == [os.path.basename(table)] and \
        inst.status() is not None


def test_backend_changes_wait_while_an_upgrade_is_under_way():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1], workers=1)
    slow = os.path.join(h.RUNTIME_DIR, f"wslb-slow-{os.getpid()}")
    with open(slow, "w") as f:
        f.write("#!/bin/sh\nsleep 3\necho 'gave up' >&2\nexit 1\n")
    os.chmod(slow, 0o700)
    upgrading = threading.Thread(target=_upgrade, args=(inst.name, slow))
    upgrading.start()
    h.wait_until(lambda: "upgrade: started" in inst.log(), 10, 0.05, "the upgrade started")
    r = h.cli("backend", "add", b2.address, "--name", inst.name)
    listed = h.cli("backend", "list", "--name", inst.name)
    upgrading.join()
    assert r.returncode == 1 and "an upgrade is in progress" in r.stderr, (r.stdout, r.stderr)
    assert listed.returncode == 0 and b1.address in listed.stdout, listed
    # Once the upgrade has answered (it failed here), the change goes through.
    assert h.cli("backend", "add", b2.address, "--name", inst.name).returncode == 0
    inst.stop()


def test_metrics_answer_across_an_upgrade_with_no_refused_connection():
    b1 = h.EchoBackend()
    admin_port = h.free_port()
    inst = h.Instance([b1], workers=1, extra=["--admin", f"127.0.0.1:{admin_port}"])
    scraper = MetricsScraper(admin_port, threads=3)
    try:
        for _ in range(2):
            before = inst.status()
            r = h.cli("upgrade", "--name", inst.name, timeout=90)
            assert r.returncode == 0, (r.stdout, r.stderr)
            h.wait_until(lambda: h.process_gone(before["master_pid"]), 60, 0.1, "old master gone")
            time.sleep(0.5)
    finally:
        scraper.stop()
    h.log(f"/metrics across two upgrades: {scraper.ok} answers, {len(scraper.failed)} failed")
    assert not scraper.failed, scraper.failed[:5]
    assert scraper.ok > 0
    assert "admin listener" in inst.log()
    assert h.cli("stop", "--name", inst.name).returncode == 0


def test_a_passed_table_descriptor_that_is_not_the_instances_table_is_refused():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1)
    before = inst.status()
    # What another process might pass as "the table": a private segment of ours that is not
    # the one the instance's record names, and the instance's real lock and a listening socket.
    planted = f"/dev/shm/wslb.{os.getuid()}.{inst.name}.0000000000000000"
    with open(planted, "wb") as f:
        f.write(b"\0" * 4096)
    os.chmod(planted, 0o600)
    lock = os.open(os.path.join(h.RUNTIME_DIR, inst.name + ".lock"), os.O_RDWR)
    table = os.open(planted, os.O_RDWR)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    control = socket.socket(socket.AF_UNIX)
    report_r, report_w = os.pipe()
    fds = {"listen": listener.fileno(), "lock": lock, "control": control.fileno(),
           "table": table, "report": report_w}
    try:
        p = subprocess.run(
            [h.WSLB, *inst.args], capture_output=True, text=True, timeout=30,
            pass_fds=tuple(fds.values()),
            env={**os.environ,
                 "WSLB_INHERITED_FDS": ",".join(f"{k}={v}" for k, v in fds.items())})
        os.close(report_w)
        with os.fdopen(report_r) as f:
            said = f.read()
    finally:
        os.unlink(planted)
        for fd in (lock, table):
            os.close(fd)
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert said.startswith("E upgrade: the inherited table is not /dev/shm/"), said
    # Nothing of the running instance changed.
    after = inst.status()
    assert after["master_pid"] == before["master_pid"] and inst.table_path() is not None
    assert h.without_counters(after) == h.without_counters(before)
    inst.stop()


def test_the_new_master_tells_systemd_it_is_the_main_pid():
    b = h.EchoBackend()
    notify = NotifySocket()
    inst = start_notified([b], env={"NOTIFY_SOCKET": notify.path})
    notify.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
    r = h.cli("upgrade", "--name", inst.name, timeout=90)
    assert r.returncode == 0, (r.stdout, r.stderr)
    new_pid = inst.status()["master_pid"]
    assert new_pid != inst.proc.pid
    # The old master hands the main pid over (systemd takes that from the main pid only)...
    handed = notify.wait_for(lambda m: m.get("MAINPID") == str(new_pid), what="MAINPID=<new>")
    assert handed
    # ... and the new one says it too with its READY=1.
    ready = notify.wait_for(lambda m: m.get("READY") == "1" and m.get("MAINPID") == str(new_pid),
                            what="MAINPID=<new> with READY=1")
    assert "workers running" in ready["STATUS"], ready
    assert new_pid in notify.senders and inst.proc.pid in notify.senders, notify.senders
    assert inst.proc.wait(60) == 0
    assert h.cli("stop", "--name", inst.name).returncode == 0
    notify.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1 from the new master")


if __name__ == "__main__":
    h.main(globals())
