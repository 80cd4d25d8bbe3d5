"""Issue 10, the affinity cookie and trusted proxies: --sticky-cookie makes every request of a
polling session reach the backend that created it; --trusted-proxies decides whose forwarding
headers are kept.
Real `wslb` binary; a real socket.io 4 server (npm `socket.io`) on two backends and its real
client (`socket.io-client`, default transports: long-polling, then the upgrade to WebSocket),
pinned by tests/socketio/package-lock.json and installed by `scripts/install-deps --test`;
wslb-echo backends and raw sockets for the cookie's rules."""

import json
import os
import re
import socket
import subprocess

import harness as h
from http_wire import ScriptedBackend, Stream, header, read_response

SOCKETIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "socketio")


def socketio_backend(ident):
    port = h.free_port()
    h.start_process(["node", os.path.join(SOCKETIO, "server.js"), str(port), ident],
                    log_path=os.path.join(h.RUNTIME_DIR, f"sio-{ident}.log"))

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    h.wait_until(listening, 15, what=f"socket.io backend {ident}")
    return f"127.0.0.1:{port}"


def get(port, target="/", cookie=None):
    """One GET on a fresh connection: (response, the backend's JSON or None)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        req = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        if cookie:
            req += f"Cookie: {cookie}\r\n"
        s.sendall((req + "\r\n").encode())
        r = read_response(Stream(s))
    return r, json.loads(r["body"]) if r["body"].startswith(b"{") else None


def cookie_of(r, name):
    v = header(r["headers"], "set-cookie")
    if v is None:
        return None
    first = v.split(";")[0]
    assert first.startswith(name + "="), v
    return first[len(name) + 1:]


def test_socketio_sessions_stick_and_upgrade_through_the_cookie():
    backends = [socketio_backend("A"), socketio_backend("B")]
    inst = h.Instance(backends, workers=2, extra=["--sticky-cookie", "SRV"])
    out = subprocess.run(["node", os.path.join(SOCKETIO, "client.js"), inst.url.replace("ws:", "http:"),
                          "40"], capture_output=True, text=True, timeout=120, check=True)
    results = json.loads(out.stdout)
    failed = [r for r in results if r.get("error") or not r["connected"] or not r["upgraded"]]
    assert not failed, failed[:5]
    per_backend = {}
    for r in results:
        ids = set(r["polling_ids"] + r["websocket_ids"])
        assert len(ids) == 1, r  # every message of a session acknowledged by one backend
        assert len(r["websocket_ids"]) >= 3, r  # the messages after the upgrade went over it
        backend = ids.pop()
        per_backend[backend] = per_backend.get(backend, 0) + 1
    h.log("sessions per backend:", per_backend)
    assert set(per_backend) == {"A", "B"}, per_backend  # spread over both
    inst.stop()


def test_cookie_rules():
    b1, b2 = h.EchoBackend(ident="one"), h.EchoBackend(ident="two")
    inst = h.Instance([b1, b2], workers=2,
                      extra=["--sticky-cookie", "SRV,max-age=1h", "--check-interval", "100ms",
                             "--check-fall", "1", "--check-rise", "1"])
    # Without a cookie: balanced, and the answer names the backend with an opaque id: 16 hex
    # digits that are neither a backend's HOST:PORT or IP text nor that text in hex.
    address_texts = {"127.0.0.1"}
    for b in (b1, b2):
        address_texts |= {b.address, b.address.encode().hex()[:16]}
    ids = {}
    for _ in range(6):
        r, j = get(inst.port)
        value = cookie_of(r, "SRV")
        assert value and re.fullmatch("[0-9a-f]{16}", value), r["headers"]
        assert not any(shown in value for shown in address_texts), (value, address_texts)
        assert "Max-Age=3600" in header(r["headers"], "set-cookie")
        ids.setdefault(j["id"], set()).add(value)
    assert set(ids) == {"one", "two"} and all(len(v) == 1 for v in ids.values()), ids
    id_one, id_two = ids["one"].pop(), ids["two"].pop()
    # With a valid cookie: that backend, every time, and no new cookie.
    for _ in range(6):
        r, j = get(inst.port, cookie=f"a=1; SRV={id_two}")
        assert j["id"] == "two" and header(r["headers"], "set-cookie") is None, (j, r["headers"])
    # An invalid cookie is balanced again and replaced.
    r, j = get(inst.port, cookie="SRV=0123456789abcdef")
    assert cookie_of(r, "SRV") == (id_one if j["id"] == "one" else id_two)
    # A WebSocket's affinity is decided on its upgrade request; the 101 carries the cookie.
    with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        r = read_response(Stream(s))
        assert r["status"] == 101 and cookie_of(r, "SRV") in (id_one, id_two), r
    # The same ids from a separate instance configured alike (another master, other workers).
    other = h.Instance([b1, b2], workers=1, extra=["--sticky-cookie", "SRV"])
    r, j = get(other.port)
    assert cookie_of(r, "SRV") == {"one": id_one, "two": id_two}[j["id"]]
    other.stop()
    # The cookie's backend goes down: balanced to the other, with a new cookie.
    b2.kill()
    h.wait_until(lambda: not inst.backend(inst.status(), b2.address)["healthy"], 10,
                 what="backend two down")
    r, j = get(inst.port, cookie=f"SRV={id_two}")
    assert j["id"] == "one" and cookie_of(r, "SRV") == id_one, (j, r["headers"])
    inst.stop()


def test_trusted_proxies_keep_the_chain_others_do_not():
    b = ScriptedBackend("b")
    spoof = (b"X-Forwarded-For: 203.0.113.5\r\nX-Real-IP: 203.0.113.5\r\n"
             b"X-Forwarded-Proto: https\r\nForwarded: for=203.0.113.5;proto=https\r\n")
    for trusted, expected in (
            ("127.0.0.0/8", {"x-forwarded-for": "203.0.113.5, 127.0.0.1", "x-real-ip": "203.0.113.5",
                             "x-forwarded-proto": "https",
                             "forwarded": "for=203.0.113.5;proto=https, for=127.0.0.1;proto=http"}),
            ("10.0.0.0/8,::1", {"x-forwarded-for": "127.0.0.1", "x-real-ip": "127.0.0.1",
                                "x-forwarded-proto": "http",
                                "forwarded": "for=127.0.0.1;proto=http"})):
        inst = h.Instance([b.address], workers=1,
                          extra=["--check", "none", "--trusted-proxies", trusted])
        with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
            st = Stream(s)
            for target in (b"/first", b"/second"):  # every request of the connection
                s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + spoof + b"\r\n")
                assert read_response(st)["status"] == 200
        for req in b.requests[-2:]:
            seen = {n.lower(): v for n, v in req["headers"]
                    if n.lower() in expected}
            assert seen == expected, (trusted, req["target"], seen)
        inst.stop()
    # A bad range is a bad flag: exit 2, naming it.
    p = subprocess.run([h.WSLB, "run", "--backend", b.address, "--trusted-proxies", "10.0.0.1/8"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "--trusted-proxies" in p.stderr, (p.returncode, p.stderr)
    p = subprocess.run([h.WSLB, "run", "--backend", b.address, "--sticky-cookie", "a b"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "--sticky-cookie" in p.stderr, (p.returncode, p.stderr)


if __name__ == "__main__":
    h.main(globals())
