"""Issue 5, one port for HTTP and WebSocket: request-head parsing, forwarding headers, PROXY
protocol towards backends, clean errors, cookie stickiness.
Real `wslb` binary, real `wslb-echo` backends (their HTTP answers report the request headers as
JSON), python3-websockets as the third-party client, and small Python backends where the test
must see the raw bytes wslb sends (PROXY headers) or needs a backend that never answers a SYN."""

import asyncio
import concurrent.futures
import json
import select
import socket
import struct
import time

import websockets

import harness as h

GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


# ----------------------------------------------------------------------------------------------
# Small clients


def http_exchange(port, data, timeout=10.0):
    """Sends `data` on a fresh connection and reads until the server closes (or `timeout`).
    Returns (status, headers {lower-case name: value}, body bytes, raw bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        raw = read_until_close(s, timeout)
    return parse_response(raw)


def read_until_close(s, timeout):
    deadline = time.monotonic() + timeout
    raw = b""
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        raw += chunk
    return raw


def parse_response(raw):
    """(status, headers, body, raw) of the first HTTP response in `raw`; status 0 if none."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return 0, {}, b"", raw
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:length], raw


def get_json(port, target="/", extra_headers=(), timeout=10.0):
    """A plain GET through wslb to a wslb-echo backend: the backend's JSON description."""
    req = f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    for name, value in extra_headers:
        req += f"{name}: {value}\r\n"
    status, _, body, raw = http_exchange(port, (req + "\r\n").encode(), timeout)
    assert status == 200, f"GET {target}: answer {raw[:300]!r}"
    return json.loads(body)


async def ws_echo(url, text="ping", extra_headers=None):
    async with websockets.connect(url, extra_headers=extra_headers, open_timeout=10) as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 10)


async def ws_whoami(url, extra_headers=None):
    return json.loads(await ws_echo(url, "whoami", extra_headers))


def check_serving(inst, pids_before):
    """The instance still relays a WebSocket echo, with the same workers (none crashed)."""
    assert h.run_async(ws_echo(inst.url, "still here")) == "still here"
    s = inst.status()
    pids = sorted(w["pid"] for w in s["workers"] if w["state"] == "running")
    assert pids == pids_before, f"workers changed: {pids_before} -> {pids}"
    assert all(w["restarts"] == 0 for w in s["workers"]), s["workers"]


def errors_of(inst):
    return inst.status()["errors"]


# ----------------------------------------------------------------------------------------------
# Raw-bytes backends


class RecordingBackend:
    """A backend that records the first bytes of every connection (to see PROXY headers) and
    then answers: an HTTP request with 200 "ok" and a close, anything else with an echo of the
    bytes after the PROXY header."""

    def __init__(self):
        self.received = []  # raw bytes of each connection, up to the answer
        self.sock = h.serve_loopback(self._one)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def _one(self, conn):
        with conn:
            conn.settimeout(5)
            data = b""
            echoed = 0
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    n = proxy_header_len(data)
                    payload = data[n:] if n else b""
                    if payload.startswith(b"GET ") and b"\r\n\r\n" in payload:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                     b"Connection: close\r\n\r\nok")
                        break
                    if payload and not b"GET ".startswith(payload[:4]):
                        conn.sendall(payload[echoed:])  # raw: echo until the client closes
                        echoed = len(payload)
            except OSError:
                pass
            self.received.append(data)

    def close(self):
        self.sock.close()


def proxy_header_len(data):
    """Length of a complete PROXY v1/v2 header at the start of `data`, else 0."""
    if data.startswith(b"PROXY "):
        end = data.find(b"\r\n")
        return end + 2 if end >= 0 else 0
    if len(data) >= 16 and data[:12] == b"\r\n\r\n\x00\r\nQUIT\n":
        length = struct.unpack("!H", data[14:16])[0]
        return 16 + length if len(data) >= 16 + length else 0
    return 0


def black_hole_backend():
    """A listening socket whose accept queue is full, so the kernel drops further SYNs and a
    connect to it times out. Returns (listener, fillers, address); keep them alive."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        raise AssertionError("black-hole backend accepted a connection: cannot test 504")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return lsock, fillers, f"127.0.0.1:{port}"


# ----------------------------------------------------------------------------------------------
# Tests


def test_websocket_and_plain_get_share_the_port_with_forwarding_headers():
    b1, b2 = h.EchoBackend(ident="one"), h.EchoBackend(ident="two")
    inst = h.Instance([b1, b2], workers=2, extra=["--mode", "http"])

    # A third-party WebSocket client upgrades and echoes through wslb.
    assert h.run_async(ws_echo(inst.url, "hello over ws")) == "hello over ws"
    # The upgrade request reached the backend with the forwarding headers.
    who = h.run_async(ws_whoami(inst.url))
    assert who["id"] in ("one", "two"), who
    assert who["headers"].get("x-forwarded-for") == "127.0.0.1", who["headers"]
    assert who["headers"].get("x-real-ip") == "127.0.0.1", who["headers"]
    assert who["headers"].get("x-forwarded-proto") == "http", who["headers"]

    # A plain GET on the same port is answered by a backend, which sees the client's address.
    j = get_json(inst.port, "/plain?x=1")
    assert j["method"] == "GET" and j["target"] == "/plain?x=1", j
    assert j["headers"].get("x-forwarded-for") == "127.0.0.1", j["headers"]
    assert j["headers"].get("x-real-ip") == "127.0.0.1", j["headers"]
    assert j["headers"].get("x-forwarded-proto") == "http", j["headers"]

    # The client is not a trusted proxy (no --trusted-proxies): its X-Forwarded-For and
    # X-Real-IP are replaced, not appended to.
    j = get_json(inst.port, "/", [("X-Forwarded-For", "10.9.8.7"), ("X-Real-IP", "6.6.6.6")])
    assert j["headers"].get("x-forwarded-for") == "127.0.0.1", j["headers"]
    assert j["headers"].get("x-real-ip") == "127.0.0.1", j["headers"]

    # Keep-alive: the second request of a connection goes to the same backend (its backend
    # connection is kept) and gets the forwarding headers too.
    with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
        s.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        first = read_one_response(s)
        s.sendall(b"GET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        second = read_one_response(s)
    assert first["target"] == "/first" and second["target"] == "/second", (first, second)
    assert first["id"] == second["id"], (first, second)
    assert first["headers"].get("x-forwarded-for") == "127.0.0.1", first
    assert second["headers"].get("x-forwarded-for") == "127.0.0.1", second
    inst.stop()

    # --forward-headers off: the head goes through without them.
    inst = h.Instance([b1], workers=1, extra=["--mode", "http", "--forward-headers", "off"])
    j = get_json(inst.port, "/", [("X-Real-IP", "6.6.6.6")])
    assert "x-forwarded-for" not in j["headers"], j["headers"]
    assert j["headers"].get("x-real-ip") == "6.6.6.6", j["headers"]
    inst.stop()


def read_one_response(s):
    """Reads exactly one Content-Length-delimited response from `s` and returns its JSON."""
    raw = b""
    s.settimeout(10)
    while b"\r\n\r\n" not in raw:
        chunk = s.recv(65536)
        assert chunk, f"connection closed mid-answer: {raw!r}"
        raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, headers, _, _ = parse_response(head + b"\r\n\r\n")
    assert status == 200, raw
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    assert len(rest) == length, "more bytes than one answer"
    return json.loads(rest)


def test_a_finished_close_handshake_ends_the_tunnel_on_the_first_fin():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1, extra=["--mode", "http"])
    s = socket.create_connection(("127.0.0.1", inst.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + GOOD_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    h.wait_until(lambda: inst.backend(inst.status(), b1.address)["active"] == 1, 5,
                 what="the tunnel counted")
    # Masked close frame, code 1000; the backend answers with its close frame and closes TCP.
    mask = b"\x01\x02\x03\x04"
    s.sendall(b"\x88\x82" + mask + bytes(a ^ b for a, b in zip(b"\x03\xe8", mask)))
    reply = read_until_close(s, 5)
    assert reply[:4] == b"\x88\x02\x03\xe8", reply
    # The client has not closed its side: with the WebSocket finished, wslb ends the tunnel
    # anyway instead of holding it half-open until the client's FIN.
    h.wait_until(lambda: inst.backend(inst.status(), b1.address)["active"] == 0, 2,
                 what="the tunnel to end without the client's FIN")
    s.close()
    inst.stop()


def test_proxy_protocol_headers_reach_the_backend():
    for mode in ("http", "tcp"):
        for version in ("v2", "v1"):
            backend = RecordingBackend()
            inst = h.Instance([backend.address], workers=1,
                              extra=["--mode", mode, "--proxy-protocol", version,
                                     "--check", "none"])
            with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as c:
                client_port = c.getsockname()[1]
                if mode == "http":
                    c.sendall(b"GET /pp HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    status, _, body, raw = parse_response(read_until_close(c, 10))
                    assert (status, body) == (200, b"ok"), raw
                else:
                    c.sendall(b"hello raw")
                    got = b""
                    c.settimeout(10)
                    while len(got) < 9:
                        chunk = c.recv(100)
                        assert chunk, got
                        got += chunk
                    assert got == b"hello raw", got
            h.wait_until(lambda: backend.received, 5, what="backend saw the connection")
            data = backend.received[0]
            n = proxy_header_len(data)
            assert n > 0, f"{mode}/{version}: no PROXY header in {data[:64]!r}"
            header, payload = data[:n], data[n:]
            if version == "v2":
                assert header[12] == 0x21, f"version/command byte {header[12]:#x}"
                assert header[13] == 0x11, f"family/protocol byte {header[13]:#x} (TCP over IPv4)"
                assert struct.unpack("!H", header[14:16])[0] == 12, header
                src, dst = socket.inet_ntoa(header[16:20]), socket.inet_ntoa(header[20:24])
                sport, dport = struct.unpack("!HH", header[24:28])
            else:
                fields = header.decode().rstrip("\r\n").split(" ")
                assert fields[:2] == ["PROXY", "TCP4"], header
                src, dst, sport, dport = fields[2], fields[3], int(fields[4]), int(fields[5])
            assert (src, sport) == ("127.0.0.1", client_port), (header, client_port)
            assert (dst, dport) == ("127.0.0.1", inst.port), (header, inst.port)
            if mode == "http":
                assert payload.startswith(b"GET /pp HTTP/1.1\r\n"), payload
                assert b"X-Forwarded-For: 127.0.0.1\r\n" in payload, payload
            else:
                assert payload == b"hello raw", payload
            h.log(f"{mode} mode, PROXY {version}: header of {n} bytes, client port {client_port}")
            inst.stop()
            backend.close()


def test_bad_requests_get_their_status_and_the_worker_keeps_serving():
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1,
                      extra=["--mode", "http", "--max-header-size", "1k",
                             "--handshake-timeout", "1s"])
    pids = sorted(inst.worker_pids())
    ws_head = ("GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n")
    cases = [
        ("malformed request line", b"GARBAGE\r\n\r\n", 400, "400_bad_request"),
        ("malformed header", b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400,
         "400_bad_request"),
        ("head over --max-header-size",
         b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n", 431,
         "431_header_too_large"),
        ("bad websocket key", ws_head.format(key="short", version=13).encode(), 400,
         "400_bad_request"),
        ("missing websocket key",
         b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Version: 13\r\n\r\n", 400, "400_bad_request"),
        ("websocket upgrade by POST",
         ws_head.format(key=GOOD_KEY, version=13).replace("GET", "POST").encode(), 400,
         "400_bad_request"),
        ("unsupported websocket version", ws_head.format(key=GOOD_KEY, version=8).encode(), 426,
         "426_upgrade_required"),
    ]
    for what, data, status, counter in cases:
        before = errors_of(inst)[counter]
        got, headers, body, raw = http_exchange(inst.port, data)
        assert got == status, f"{what}: expected {status}, got {raw[:200]!r}"
        assert headers.get("connection") == "close", f"{what}: {raw[:200]!r}"
        assert int(headers.get("content-length", -1)) == len(body) > 0, raw
        if status == 426:
            assert headers.get("sec-websocket-version") == "13", raw
        h.wait_until(lambda: errors_of(inst)[counter] == before + 1, 5,
                     what=f"{counter} counted for {what}")
        check_serving(inst, pids)
        h.log(f"{what}: {status}, counted, worker still serving")

    # Slowloris: a head trickled byte by byte is cut at --handshake-timeout with a 408.
    before = errors_of(inst)["408_request_timeout"]
    trickle = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 200
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
        raw = b""
        for byte in trickle:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            r, _, _ = select.select([s], [], [], 0.05)
            if r:
                raw = read_until_close(s, 5)
                break
    elapsed = time.monotonic() - start
    status, headers, _, _ = parse_response(raw)
    assert status == 408, f"slowloris got {raw[:200]!r} after {elapsed:.2f}s"
    assert 0.8 <= elapsed <= 4.0, f"408 after {elapsed:.2f}s with --handshake-timeout 1s"
    h.wait_until(lambda: errors_of(inst)["408_request_timeout"] == before + 1, 5,
                 what="408 counted")
    check_serving(inst, pids)
    h.log(f"slowloris: 408 after {elapsed:.2f}s")
    inst.stop()


def test_backend_failures_get_502_503_504():
    # 502: the only backend refuses connections. Checks off and a high fall so that neither the
    # checker nor passive marking turns it into "no healthy backend".
    dead_port = h.free_port()
    inst = h.Instance([f"127.0.0.1:{dead_port}"], workers=1,
                      extra=["--check", "none", "--check-fall", "100", "--connect-timeout", "1s"])
    pids = sorted(inst.worker_pids())
    for _ in range(2):  # twice: the worker answers again after the first
        status, headers, _, raw = http_exchange(inst.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 502, raw
        assert headers.get("connection") == "close", raw
    assert errors_of(inst)["502_bad_gateway"] == 2, errors_of(inst)
    assert sorted(inst.worker_pids()) == pids
    inst.stop()

    # 504: the only backend never completes the TCP handshake.
    lsock, fillers, address = black_hole_backend()
    inst = h.Instance([address], workers=1,
                      extra=["--check", "none", "--check-fall", "100", "--connect-timeout", "1s"])
    pids = sorted(inst.worker_pids())
    start = time.monotonic()
    status, _, _, raw = http_exchange(inst.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    elapsed = time.monotonic() - start
    assert status == 504, raw
    assert 0.8 <= elapsed <= 5, f"504 after {elapsed:.2f}s with --connect-timeout 1s"
    assert errors_of(inst)["504_gateway_timeout"] == 1, errors_of(inst)
    assert sorted(inst.worker_pids()) == pids
    inst.stop()
    lsock.close()
    for f in fillers:
        f.close()

    # 503: the only backend is down by health checks; both kinds of request are answered 503.
    dead_port = h.free_port()
    inst = h.Instance([f"127.0.0.1:{dead_port}"], workers=1,
                      extra=["--check", "tcp", "--check-interval", "200ms", "--check-fall", "1",
                             "--check-timeout", "500ms"])
    pids = sorted(inst.worker_pids())
    h.wait_until(lambda: not inst.status()["backends"][0]["healthy"], 10,
                 what="backend marked down")
    status, _, body, raw = http_exchange(inst.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 503 and body, raw
    status, _, _, raw = http_exchange(
        inst.port, ("GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {GOOD_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert status == 503, raw
    assert errors_of(inst)["503_no_backend"] == 2, errors_of(inst)
    assert sorted(inst.worker_pids()) == pids
    inst.stop()


def test_cookie_stickiness_moves_only_the_dead_backends_keys():
    backends = [h.EchoBackend(ident=f"b{i}") for i in range(3)]
    inst = h.Instance(backends, workers=2,
                      extra=["--balance", "cookie:sid", "--check", "tcp", "--check-interval",
                             "200ms", "--check-fall", "1", "--check-rise", "1",
                             "--check-timeout", "500ms"])
    keys = [f"user-{i}" for i in range(100)]

    def round_of_1000():
        """1,000 connections, 10 per key, in a shuffled order: key -> set of backend ids."""
        jobs = [k for k in keys for _ in range(10)]
        jobs = jobs[::7] + [k for i, k in enumerate(jobs) if i % 7]  # not grouped by key
        seen = {k: set() for k in keys}
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            for k, j in zip(jobs, pool.map(
                    lambda k: get_json(inst.port, "/poll", [("Cookie", f"a=1; sid={k}")]), jobs)):
                seen[k].add(j["id"])
        return seen

    first = round_of_1000()
    split = {b.ident: sum(1 for k in keys if first[k] == {b.ident}) for b in backends}
    h.log("keys per backend:", split)
    for k in keys:
        assert len(first[k]) == 1, f"key {k} reached several backends: {first[k]}"
    owner = {k: next(iter(first[k])) for k in keys}
    assert all(n > 0 for n in split.values()), split

    # The WebSocket connection of a client goes where its polling requests went.
    for k in keys[:10]:
        who = h.run_async(ws_whoami(inst.url, [("Cookie", f"sid={k}")]))
        assert who["id"] == owner[k], (k, who["id"], owner[k])

    # A request without the key still gets an answer (least-conn fallback).
    assert get_json(inst.port, "/nokey")["id"] in split

    victim = backends[1]
    victim.kill()
    h.wait_until(lambda: not inst.backend(inst.status(), victim.address)["healthy"], 10,
                 what="killed backend marked down")
    second = round_of_1000()
    moved = 0
    for k in keys:
        assert len(second[k]) == 1, f"key {k} reached several backends: {second[k]}"
        now = next(iter(second[k]))
        assert now != victim.ident, (k, now)
        if owner[k] == victim.ident:
            moved += 1
        else:
            assert now == owner[k], f"key {k} moved from surviving {owner[k]} to {now}"
    h.log(f"after killing {victim.ident}: {moved} keys moved, all others stayed")
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
