"""TLS towards backends (`--backend HOST:PORT,tls[,sni=NAME][,ca=FILE]`): plain ws clients and
raw tcp through wslb to real TLS backends (python ssl + websockets), verification failures
(wrong CA, a name the certificate does not carry) as failed connects, health checks over TLS,
bad input and a refused reload, `backend add` of a TLS backend, and a restart that drains such
connections instead of handing them over."""

import asyncio
import hashlib
import json
import os
import socket
import time

import websockets

import harness as h
from tls_pki import TestPKI

_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_echo_backend.py")


class TlsBackend(h.EchoBackend):
    """tls_echo_backend.py on 127.0.0.1:port with the certificate `pair` (cert, key)."""

    def __init__(self, pair, mode="ws"):
        self.pair, self.mode = pair, mode
        super().__init__()

    @property
    def log_path(self):
        return os.path.join(h.RUNTIME_DIR, f"tls-backend-{self.port}.log")

    def start(self):
        self.proc = h.start_process(["/usr/bin/python3", _SERVER, "--port", str(self.port),
                                     "--cert", self.pair[0], "--key", self.pair[1],
                                     "--mode", self.mode], log_path=self.log_path)
        h.wait_until(lambda: self.log().rstrip().endswith("ready") or self.proc.poll() is not None,
                     15, what=f"TLS backend {self.address}")
        assert self.proc.poll() is None, self.log()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def _pki(name="wslb test CA"):
    return TestPKI(os.path.join(h.RUNTIME_DIR, f"pki-{h.unique_name()}"), ca_name=name)


def _fast_checks(kind="tcp"):
    return ["--check", kind, "--check-interval", "200ms", "--check-rise", "1",
            "--check-fall", "1", "--check-timeout", "2s"]


async def _echo_sizes(url, sizes):
    async with websockets.connect(url, max_size=None) as ws:
        for n in sizes:
            text = ("wslb" * (n // 4 + 1))[:n]
            await ws.send(text)
            assert await ws.recv() == text, f"text echo of {n} bytes"
            data = os.urandom(n)
            await ws.send(data)
            assert await ws.recv() == data, f"binary echo of {n} bytes"
        await ws.close()
        return ws.close_code


def _one_echo(url, payload="ping"):
    async def go():
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.send(payload)
            return await ws.recv()
    return h.run_async(go(), timeout=30)


def test_ws_clients_through_wslb_to_a_wss_backend_verified_by_name_and_by_ip():
    pki = _pki()
    cert = pki.issue("backend", ["backend.test"], ips=["127.0.0.1"])
    by_name = TlsBackend(cert)
    by_ip = TlsBackend(cert)
    spec_name = f"{by_name.address},tls,sni=backend.test,ca={pki.ca_cert}"
    spec_ip = f"{by_ip.address},tls,ca={pki.ca_cert}"
    inst = h.Instance([spec_name, spec_ip], workers=1, extra=_fast_checks())
    sizes = [1, 125, 126, 65535, 65536, 1 << 20]

    async def two_clients():  # at once: least-conn gives each backend one
        return await asyncio.gather(_echo_sizes(inst.url, sizes), _echo_sizes(inst.url, sizes))
    assert h.run_async(two_clients()) == [1000, 1000]
    assert "sni backend.test" in by_name.log(), by_name.log()
    assert "no sni" in by_ip.log() and "sni 127" not in by_ip.log(), by_ip.log()  # an IP: none
    for b in (by_name, by_ip):
        h.wait_until(lambda: "closed 1000" in b.log(), 5, what="the backend's clean close")
        assert "alpn http/1.1" in b.log(), b.log()
    s = inst.status()
    name_row, ip_row = inst.backend(s, by_name.address), inst.backend(s, by_ip.address)
    assert name_row["tls"] == {"sni": "backend.test", "verify_name": "backend.test",
                               "ca": pki.ca_cert}, name_row["tls"]
    assert ip_row["tls"] == {"sni": None, "verify_name": "127.0.0.1", "ca": pki.ca_cert}
    assert name_row["total"] == 1 and ip_row["total"] == 1, s["backends"]
    assert name_row["health"] == "up" and name_row["failures"] == 0, name_row
    plain = h.Instance([h.EchoBackend()], workers=1)
    assert plain.status()["backends"][0]["tls"] is None
    plain.stop()
    text = h.cli("status", "--name", inst.name).stdout
    assert f"tls: certificate verified for backend.test (sni) against {pki.ca_cert}" in text, text
    assert "tls: certificate verified for 127.0.0.1 against" in text, text
    inst.stop()
    by_name.kill()
    by_ip.kill()


def test_tcp_mode_relays_several_mib_each_way_over_tls_to_the_backend():
    pki = _pki()
    backend = TlsBackend(pki.issue("raw", ["raw.test"]), mode="raw")
    inst = h.Instance([f"{backend.address},tls,sni=raw.test,ca={pki.ca_cert}"], workers=1,
                      extra=["--mode", "tcp"])
    data = os.urandom(6 << 20)
    with socket.create_connection(("127.0.0.1", inst.port), timeout=30) as sock:
        got, digest = h.echo_through(sock, data, shut_write=True)
    assert got == len(data) and digest == hashlib.sha256(data).hexdigest(), got
    h.wait_until(lambda: f"raw echoed {len(data)}" in backend.log(), 10, what="backend's count")
    s = inst.status()
    b = inst.backend(s, backend.address)
    assert b["bytes_in"] == len(data) and b["bytes_out"] == len(data), b
    inst.stop()
    backend.kill()


def test_a_wrong_ca_or_name_is_a_failed_connect_and_the_good_backend_takes_the_traffic():
    pki, other = _pki(), _pki("another CA")
    good = TlsBackend(pki.issue("good", ["good.test"]))
    wrong_ca = TlsBackend(other.issue("stranger", ["good.test"]))
    wrong_name = TlsBackend(pki.issue("named", ["named.test"]))
    specs = [f"{good.address},tls,sni=good.test,ca={pki.ca_cert}",
             f"{wrong_ca.address},tls,sni=good.test,ca={pki.ca_cert}",
             f"{wrong_name.address},tls,sni=elsewhere.test,ca={pki.ca_cert}"]
    # Without checks, each refused backend is met by clients: 502 when it is the only one.
    alone = h.Instance([specs[1]], workers=1, extra=["--check", "none"])
    for _ in range(3):
        try:
            _one_echo(alone.url)
            raise AssertionError("a backend with a certificate from another CA was used")
        except websockets.InvalidStatusCode as e:
            assert e.status_code == 502, e
    h.wait_until(lambda: "certificate verify failed" in alone.log(), 5, what="the log line")
    lines = [l for l in alone.log().splitlines() if "certificate verify failed" in l]
    assert len(lines) == 1, lines  # once, not once per connection
    assert f"connect {wrong_ca.address} failed: certificate verify failed: unable to get local " \
           "issuer certificate" in lines[0], lines
    assert inst_failures(alone, wrong_ca.address) == 3
    alone.stop()

    inst = h.Instance(specs, workers=1, extra=_fast_checks())
    h.wait_until(lambda: all(inst.backend(inst.status(), b.address)["health"] == "down"
                             for b in (wrong_ca, wrong_name)), 10, what="checker marks down")
    s = inst.status()
    ca_row, name_row = inst.backend(s, wrong_ca.address), inst.backend(s, wrong_name.address)
    assert "unable to get local issuer certificate" in ca_row["check"]["last_error"], ca_row
    assert "hostname mismatch" in name_row["check"]["last_error"], name_row
    assert inst.backend(s, good.address)["health"] == "up"
    for i in range(20):
        assert _one_echo(inst.url, f"m{i}") == f"m{i}"
    s = inst.status()
    assert inst.backend(s, good.address)["total"] == 20, s["backends"]
    text = h.cli("status", "--name", inst.name).stdout
    assert "hostname mismatch" in text and "unable to get local issuer" in text, text
    inst.stop()
    for b in (good, wrong_ca, wrong_name):
        b.kill()


def inst_failures(inst, address):
    return inst.backend(inst.status(), address)["failures"]


def test_a_name_mismatch_refuses_every_connection_and_marks_it_passively_down():
    pki = _pki()
    backend = TlsBackend(pki.issue("named", ["named.test"]))
    # The checker's tcp check connects (TCP) fine; only the TLS check and traffic see the name.
    inst = h.Instance([f"{backend.address},tls,sni=other.test,ca={pki.ca_cert}"], workers=1,
                      extra=["--check", "tcp", "--check-interval", "1h", "--check-fall", "2"])
    statuses = []
    for _ in range(2):
        try:
            _one_echo(inst.url)
        except websockets.InvalidStatusCode as e:
            statuses.append(e.status_code)
    assert statuses == [502, 502], statuses
    b = inst.backend(inst.status(), backend.address)
    assert b["failures"] == 2 and b["health"] == "down", b  # passive: fall 2
    assert "hostname mismatch" in b["check"]["last_error"], b
    inst.stop()
    backend.kill()


def test_bad_tls_options_exit_2_naming_them_and_a_bad_reload_changes_nothing():
    pki = _pki()
    backend = TlsBackend(pki.issue("good", ["good.test"]))
    missing = os.path.join(pki.dir, "missing.pem")
    garbage = os.path.join(pki.dir, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("this is not a certificate\n")
    a = backend.address
    cases = [
        (f"{a},tls,ca={missing}",
         f"--backend {a}: ca file '{missing}': cannot read it: No such file or directory"),
        (f"{a},tls,ca={garbage}", f"--backend {a}: ca file '{garbage}': it holds no PEM certificate"),
        (f"{a},tls,ca={pki.ca_key}",
         f"--backend {a}: ca file '{pki.ca_key}': it holds no PEM certificate"),
        (f"{a},tls,verify=off", f"--backend: 'verify=off' in '{a},tls,verify=off' is not "
                                "weight=N, maxconn=N, slowstart=DURATION, tls, sni=NAME or ca=FILE"),
        (f"{a},sni=good.test", f"--backend: 'sni=good.test' in '{a},sni=good.test' needs tls "
                               "(HOST:PORT,tls,sni=good.test)"),
        (f"{a},ca={pki.ca_cert}", f"--backend: 'ca={pki.ca_cert}' in '{a},ca={pki.ca_cert}' "
                                  f"needs tls (HOST:PORT,tls,ca={pki.ca_cert})"),
        (f"{a},tls,sni=bad_name!", f"--backend: 'sni=bad_name!' in '{a},tls,sni=bad_name!' is "
                                   "not sni=NAME"),
        (f"{a},tls,tls", f"--backend: 'tls' in '{a},tls,tls' repeats tls"),
    ]
    for spec, message in cases:
        r = h.cli("run", "--name", h.unique_name(), "--listen", f"127.0.0.1:{h.free_port()}",
                  "--backend", spec, timeout=20)
        assert r.returncode == 2, (spec, r.returncode, r.stderr)
        assert r.stderr.startswith(f"wslb run: {message}"), (spec, r.stderr)
    # The same from a config file.
    cfg = os.path.join(pki.dir, "wslb.toml")
    h.write_config(cfg, [f"{a},tls,ca={missing}"])
    r = h.cli("run", "--name", h.unique_name(), "--config", cfg, timeout=20)
    assert r.returncode == 2 and f"ca file '{missing}': cannot read it" in r.stderr, r.stderr

    h.write_config(cfg, [f"{a},tls,sni=good.test,ca={pki.ca_cert}"], "check = \"none\"\n")
    inst = h.Instance([], workers=1, extra=["--config", cfg])
    assert _one_echo(inst.url) == "ping"
    before = h.without_counters(inst.status())
    pids = inst.worker_pids()
    for spec, why in [(f"{a},tls,sni=good.test,ca={garbage}", "it holds no PEM certificate"),
                      (f"{a},tls,sni=good.test,ca={missing}", "cannot read it")]:
        h.write_config(cfg, [spec], "check = \"none\"\n")
        r = h.cli("reload", "--name", inst.name)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "reload refused, configuration unchanged: --backend " in r.stderr and why in r.stderr, \
            r.stderr
        assert h.without_counters(inst.status()) == before
        assert inst.worker_pids() == pids
        assert _one_echo(inst.url) == "ping"
    inst.stop()
    backend.kill()


def test_health_checks_run_over_tls_a_stopped_backend_goes_down_and_comes_back_up():
    pki = _pki()
    backend = TlsBackend(pki.issue("good", ["good.test"]))
    spare = h.EchoBackend()
    for kind in ("websocket", "tcp"):
        inst = h.Instance([f"{backend.address},tls,sni=good.test,ca={pki.ca_cert}", spare],
                          workers=1, extra=_fast_checks(kind))
        health = lambda: inst.backend(inst.status(), backend.address)
        h.wait_until(lambda: health()["check"]["last_result"] == "ok", 10, what="a TLS check")
        if kind == "websocket":
            # The websocket check is a real upgrade over TLS, answered by the backend.
            h.wait_until(lambda: "websocket / alpn http/1.1" in backend.log(), 5, what="upgrade")
        backend.kill()
        h.wait_until(lambda: health()["health"] == "down", 10, what="down once stopped")
        backend.start()
        h.wait_until(lambda: health()["health"] == "up", 10, what="up once started")
        assert _one_echo(inst.url) == "ping"
        inst.stop()
    backend.kill()


def test_backend_add_takes_a_tls_backend_and_a_bad_ca_is_refused():
    pki = _pki()
    backend = TlsBackend(pki.issue("added", ["added.test"]))
    first = h.EchoBackend()
    inst = h.Instance([first], workers=2, extra=_fast_checks())
    missing = os.path.join(pki.dir, "missing.pem")
    r = h.cli("backend", "add", f"{backend.address},tls,ca={missing}", "--name", inst.name)
    assert r.returncode != 0 and f"ca file '{missing}': cannot read it" in (r.stdout + r.stderr), r
    r = h.cli("backend", "add", f"{backend.address},tls,sni=added.test,ca={pki.ca_cert}",
              "--name", inst.name)
    assert r.returncode == 0, (r.stdout, r.stderr)
    s = inst.status()
    assert inst.backend(s, backend.address)["tls"]["sni"] == "added.test"
    h.wait_until(lambda: inst.backend(inst.status(), backend.address)["check"]["last_result"]
                 == "ok", 10, what="the added backend's TLS check")
    first.kill()  # from now on only the added TLS backend can answer
    h.wait_until(lambda: inst.backend(inst.status(), first.address)["health"] == "down", 10,
                 what="the first backend down")
    for i in range(6):  # both workers (least-conn spreads the accepts) use the added backend
        assert _one_echo(inst.url, f"a{i}") == f"a{i}"
    assert inst.backend(inst.status(), backend.address)["total"] == 6
    inst.stop()
    backend.kill()


def test_a_restart_drains_connections_to_a_tls_backend_instead_of_handing_them_over():
    pki = _pki()
    backend = TlsBackend(pki.issue("good", ["good.test"]))
    inst = h.Instance([f"{backend.address},tls,sni=good.test,ca={pki.ca_cert}"], workers=1,
                      extra=["--drain-timeout", "3s", "--check", "none"])

    async def go():
        async with websockets.connect(inst.url) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            r = await asyncio.to_thread(h.cli, "restart-workers", "--name", inst.name)
            assert r.returncode == 0, r.stderr
            await ws.send("during")  # still served by the old worker while it drains
            assert await ws.recv() == "during"
            started = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code, time.monotonic() - started

    code, waited = h.run_async(go(), timeout=60)
    assert code == 1001, code
    assert waited >= 1, waited  # at the drain deadline, not at once
    s = inst.status()
    assert sum(w["handed_over"] for w in s["workers"]) == 0, s["workers"]
    h.wait_until(lambda: "closed 1001" in backend.log(), 5, what="the backend's 1001 inside TLS")
    assert _one_echo(inst.url) == "ping"  # the new generation connects over TLS too
    inst.stop()
    backend.kill()


if __name__ == "__main__":
    h.main(globals())
