"""Issue 13, running as a service: systemd's notify protocol on a datagram socket the test owns
as NOTIFY_SOCKET (READY, RELOADING with MONOTONIC_USEC, STATUS, WATCHDOG, STOPPING), socket
activation with listening sockets the test binds and passes as descriptors 3 and 4, and
`--user` dropping root to `nobody`."""

import asyncio
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import time

import admin_client as a
import harness as h


class NotifySocket:
    """The datagram socket systemd would own: collects every message wslb sends."""

    def __init__(self):
        self.path = os.path.join(h.RUNTIME_DIR, f"notify-{time.monotonic_ns()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        # The kernel then says which process sent each message (systemd's NotifyAccess=main
        # accepts only the main process's).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages = []
        self.senders = set()
        # Messages already returned by wait_for, by their index in `messages` (an id() would be
        # reused by Python once a string of an earlier socket is freed).
        self.seen = set()

    def poll(self):
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return self.messages
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    self.senders.add(struct.unpack("iII", payload[:12])[0])
            self.messages.append(data.decode())

    def wait_for(self, predicate, timeout=15, what="a notify message"):
        """Waits for a message (a dict of its assignments) satisfying predicate; returns it."""
        def found():
            for i, m in enumerate(self.poll()):
                fields = dict(line.split("=", 1) for line in m.split("\n") if "=" in line)
                if predicate(fields) and i not in self.seen:
                    self.seen.add(i)
                    return fields
            return None
        return h.wait_until(found, timeout, what=what)


def start_notified(backends, extra=(), env=None):
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return h.Instance(backends, extra=list(extra))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_sd_notify_ready_reload_status_watchdog_stopping():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    notify = NotifySocket()
    config = os.path.join(h.RUNTIME_DIR, "notify.toml")
    h.write_config(config, [b1])
    inst = start_notified([], extra=["--config", config],
                          env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"})
    ready = notify.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
    assert "2 workers running" in ready["STATUS"], ready
    # READY only once the first generation accepts: status agrees.
    assert sum(w["state"] == "running" for w in inst.status()["workers"]) == 2
    watchdogs = lambda: sum(m == "WATCHDOG=1" for m in notify.poll())
    h.wait_until(lambda: watchdogs() >= 3, 10, what="three WATCHDOG=1")

    # A live STATUS= line: it follows the connections.
    held = [socket.create_connection(("127.0.0.1", inst.port)) for _ in range(3)]
    notify.wait_for(lambda m: "3 connections" in m.get("STATUS", ""), what="STATUS with 3")
    for s in held:
        s.close()

    # A reload through SIGHUP, as systemd's ReloadSignal sends it.
    h.write_config(config, [b1, b2])
    inst.proc.send_signal(signal.SIGHUP)
    reloading = notify.wait_for(lambda m: m.get("RELOADING") == "1", what="RELOADING=1")
    usec = int(reloading["MONOTONIC_USEC"])
    assert abs(usec / 1e6 - time.monotonic()) < 60, (usec, time.monotonic())
    done = notify.wait_for(lambda m: m.get("READY") == "1", what="READY=1 after reload")
    assert done["STATUS"].startswith("reloaded: "), done
    assert b2.address in done["STATUS"], done

    # A refused reload also ends with READY=1, saying so.
    h.write_config(config, ["127.0.0.1:0"])
    assert h.cli("reload", "--name", inst.name).returncode == 1
    notify.wait_for(lambda m: m.get("RELOADING") == "1", what="RELOADING=1 (refused)")
    refused = notify.wait_for(lambda m: m.get("READY") == "1", what="READY=1 (refused)")
    assert refused["STATUS"].startswith("reload failed: "), refused

    inst.stop()
    notify.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")


def test_only_the_master_notifies_and_ready_comes_once():
    b = h.EchoBackend()
    notify = NotifySocket()
    inst = start_notified([b], env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
    notify.wait_for(lambda m: m.get("READY") == "1", what="READY=1")
    held = [socket.create_connection(("127.0.0.1", inst.port)) for _ in range(2)]
    h.run_async(asyncio.sleep(1.5))
    for s in held:
        s.close()
    assert notify.senders == {inst.proc.pid}, (notify.senders, inst.proc.pid)
    assert sum("READY=1" in m for m in notify.poll()) == 1, notify.messages


def activated(listener, admin, name, extra=(), names="listen:admin", backends=()):
    """Starts `wslb run` with `listener` and `admin` (sockets) as descriptors 3 and 4 and
    LISTEN_PID set to its own pid, as systemd does."""
    socks = [s for s in (listener, admin) if s is not None]

    def place():
        for i, s in enumerate(socks):
            os.dup2(s.fileno(), 3 + i)
    args = ["run", "--name", name, "--workers", "2", *extra]
    for b in backends:
        args += ["--backend", b.address]
    log_path = os.path.join(h.RUNTIME_DIR, f"{name}.log")
    env_prefix = f"LISTEN_PID=$$ LISTEN_FDS={len(socks)} LISTEN_FDNAMES={names} "
    return h.start_process(
        ["/bin/sh", "-c", env_prefix + 'exec "$0" "$@"', h.WSLB, *args], log_path=log_path,
        preexec_fn=place, pass_fds=tuple(range(3, 3 + len(socks))))


def listening_socket():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s, s.getsockname()[1]


def test_socket_activation_serves_the_passed_listeners():
    b = h.EchoBackend()
    listener, port = listening_socket()
    admin, admin_port = listening_socket()
    name = h.unique_name("sa")
    unused = h.free_port()  # --listen names a port wslb must not bind: the passed one serves
    proc = activated(listener, admin, name, backends=[b],
                     extra=["--mode", "tcp", "--listen", f"127.0.0.1:{unused}",
                            "--admin", f"127.0.0.1:{h.free_port()}"])
    listener.close()
    admin.close()

    def status():
        r = h.cli("status", "--name", name, "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None
    h.wait_until(lambda: (status() or {}).get("workers") and
                 sum(w["state"] == "running" for w in status()["workers"]) == 2, 15,
                 what="2 running workers")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert h.echo_through(c, b"through the passed socket")[0] == 25
    code, _, body = a.get(admin_port, "/status")
    assert code == 200 and json.loads(body)["name"] == name
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", unused)) != 0, "wslb bound --listen itself"
    log = open(os.path.join(h.RUNTIME_DIR, f"{name}.log")).read()
    assert "socket activation: 2 socket(s) passed" in log, log
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_socket_activation_refuses_a_socket_that_does_not_listen():
    b = h.EchoBackend()
    not_listening = socket.socket()
    name = h.unique_name("sa")
    proc = activated(not_listening, None, name, names="listen", backends=[b])
    not_listening.close()
    assert proc.wait(15) == 3
    log = open(os.path.join(h.RUNTIME_DIR, f"{name}.log")).read()
    assert "descriptor 3 ('listen') is not a listening TCP socket" in log, log


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]


def privileged_free_port():
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024")


def test_user_drops_root_to_nobody():
    if os.geteuid() != 0:
        h.log("SKIP: needs root")
        return
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrgid(nobody.pw_gid).gr_name
    # The runtime directory of an instance belongs to its user: nobody's own, mode 0700, and
    # a copy of the binary nobody can run for `status`.
    home = os.path.join(h.RUNTIME_DIR, "nobody")
    os.makedirs(home, mode=0o711)
    os.chmod(h.RUNTIME_DIR, 0o711)
    runtime = os.path.join(home, "run")
    os.makedirs(runtime, mode=0o700)
    os.chown(runtime, nobody.pw_uid, nobody.pw_gid)
    wslb = os.path.join(home, "wslb")
    shutil.copy(h.WSLB, wslb)
    os.chmod(wslb, 0o755)
    b = h.EchoBackend()
    port = privileged_free_port()
    name = h.unique_name("priv")
    log_path = os.path.join(h.RUNTIME_DIR, f"{name}.log")
    env = dict(os.environ, WSLB_RUNTIME_DIR=runtime)
    proc = h.start_process([wslb, "run", "--name", name, "--listen", f"127.0.0.1:{port}",
                            "--backend", b.address, "--workers", "2", "--mode", "tcp",
                            "--user", f"nobody:{nogroup}"], log_path=log_path, env=env)

    def as_nobody(*args):
        return subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                               "--clear-groups", wslb, *args], capture_output=True, text=True,
                              env=env, timeout=30)

    def status():
        r = as_nobody("status", "--name", name, "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None
    h.wait_until(lambda: proc.poll() is not None or ((status() or {}).get("workers") and
                 sum(w["state"] == "running" for w in status()["workers"]) == 2), 15,
                 what="2 running workers")
    assert proc.poll() is None, open(log_path).read()
    s = status()
    pids = [s["master_pid"], s["checker"]["pid"]] + [w["pid"] for w in s["workers"]]
    for pid in pids:
        assert uid_of(pid) == [nobody.pw_uid] * 4, (pid, uid_of(pid))
    # The privileged port was bound before the drop and serves.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert h.echo_through(c, b"low port")[0] == 8
    owned = [os.path.join(runtime, f"{name}.sock"), os.path.join(runtime, f"{name}.lock")]
    owned += [os.path.join("/dev/shm", f) for f in os.listdir("/dev/shm") if name in f]
    assert len(owned) >= 3, owned
    for path in owned:
        assert os.stat(path).st_uid == nobody.pw_uid, (path, os.stat(path).st_uid)
    assert "running as user nobody" in open(log_path).read()
    r = as_nobody("stop", "--name", name)
    assert r.returncode == 0, r.stderr
    assert proc.wait(15) == 0


def test_user_refused_without_root_or_unknown():
    r = h.cli("run", "--backend", "127.0.0.1:9001", "--user", "no-such-user-here")
    assert r.returncode == 2 and "--user" in r.stderr and "no user" in r.stderr, r.stderr
    r = h.cli("run", "--backend", "127.0.0.1:9001", "--user", "nobody:no-such-group")
    assert r.returncode == 2 and "no group" in r.stderr, r.stderr


if __name__ == "__main__":
    h.main(globals())
