"""Issue 14, connections caught by a handover before their tunnel has started: a client half
way through its upgrade request, a backend that answers the upgrade late, a TLS client in its
handshake and kept-alive HTTP connections. Each finishes in the old worker and moves once its
tunnel starts, or ends there within the drain timeout; none hangs, and the table counts each
one where it is. Real binary, raw sockets and python3-websockets, loopback."""

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
import threading
import time

import websockets

import harness as h
from http_wire import Stream, read_response
from test_handover import ADMIN_TOKEN, _live_connections
from test_handover_spread import _settled, closes_by_cause
from test_tls import _client_context, _pki, _tls_flags

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _upgrade_request(host):
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    return request, accept


def _masked_frame(opcode, payload):
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + \
        bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_frame(read_exactly):
    """(opcode, payload) of one short frame, unmasking it if masked."""
    first, second = read_exactly(2)
    length = second & 0x7F
    assert length < 126, length
    mask = read_exactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = read_exactly(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _old_worker_holds(inst, gen, count):
    """The status while the old generation still has a worker, holding `count` connections."""
    s = inst.status()
    old = [w for w in s["workers"] if w["generation"] == gen]
    assert old and sum(w["connections"] for w in old) == count, s["workers"]
    assert all(w["state"] == "draining" for w in old), old
    return s


def test_a_client_half_way_through_its_upgrade_request_is_handed_over_once_it_is_answered():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=2, extra=["--drain-timeout", "60s"])
    request, accept = _upgrade_request(f"127.0.0.1:{inst.port}")
    sock = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
    st = Stream(sock)
    sock.sendall(request[:len(request) // 2])
    h.wait_until(lambda: _live_connections(inst.status()) == 1, 10, 0.05, "the client accepted")
    gen = inst.status()["generation"]
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r
    # The new workers run; the half request stays in the old worker, which waits for it.
    h.wait_until(lambda: sum(1 for w in inst.status()["workers"]
                             if w["generation"] == gen + 1 and w["state"] == "running") == 2,
                 30, 0.05, "the new workers running")
    time.sleep(0.5)
    s = _old_worker_holds(inst, gen, 1)
    assert all(w["handed_in"] == 0 for w in s["workers"] if w["generation"] == gen + 1), s
    sock.sendall(request[len(request) // 2:])
    answer = read_response(st)
    assert answer["status"] == 101, answer
    assert dict((k.lower(), v) for k, v in answer["headers"])["sec-websocket-accept"] == accept
    # Its tunnel started: it moves, and the old worker, holding nothing, exits.
    s = _settled(inst, gen + 1, 1)
    assert sum(w["handed_in"] for w in s["workers"]) == 1 and s["handover_lost"] == 0, s
    for i in range(3):
        sock.sendall(_masked_frame(0x1, f"after the handover {i}".encode()))
        assert _read_frame(st.read_exactly) == (0x1, f"after the handover {i}".encode())
    sock.close()
    _settled(inst, gen + 1, 0)
    inst.stop()


class SlowUpgradeBackend:
    """A raw WebSocket backend that answers an upgrade only once the test sets `release` and
    `delay` seconds more have passed, then echoes short frames unmasked, as a server sends
    them. `asked` is set when a request has arrived."""

    def __init__(self, delay):
        self.delay = delay
        self.asked = threading.Event()
        self.release = threading.Event()
        self.sock = h.serve_loopback(self._one)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _one(self, conn):
        with conn:
            conn.settimeout(30)
            st = Stream(conn)
            try:
                head = st.read_until(b"\r\n\r\n").decode("latin-1")
                key = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
                       if line.lower().startswith("sec-websocket-key:")][0]
                self.asked.set()
                self.release.wait(30)
                time.sleep(self.delay)
                accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                             b"\r\n\r\n")
                while True:
                    opcode, payload = _read_frame(st.read_exactly)
                    conn.sendall(bytes([0x80 | opcode, len(payload)]) + payload)
                    if opcode == 0x8:
                        return
            except (OSError, EOFError):
                return


def test_a_backend_answering_the_upgrade_a_second_late_across_the_restart():
    backend = SlowUpgradeBackend(delay=1.0)
    inst = h.Instance([backend.address], workers=2,
                      extra=["--check", "none", "--drain-timeout", "60s"])
    report = {}

    async def scenario():
        gen = (await asyncio.to_thread(inst.status))["generation"]
        async def open_one():
            return await websockets.connect(inst.url, open_timeout=30, ping_interval=None)
        opening = asyncio.create_task(open_one())
        await asyncio.to_thread(backend.asked.wait, 10)
        started = time.monotonic()
        r = await asyncio.to_thread(h.cli, "restart-workers", "--name", inst.name)
        assert r.returncode == 0, r
        report["restart_s"] = time.monotonic() - started
        # The new generation serves; the old worker still waits for the backend's answer.
        await asyncio.to_thread(_old_worker_holds, inst, gen, 1)
        backend.release.set()
        ws = await opening
        report["opened_s"] = time.monotonic() - started
        # The 101 came through the old worker after the new generation took over; then the
        # tunnel moved to it.
        s = await asyncio.to_thread(_settled, inst, gen + 1, 1)
        report["handed_in"] = sum(w["handed_in"] for w in s["workers"])
        report["lost"] = s["handover_lost"]
        for i in range(3):
            await ws.send(f"late {i}")
            assert await asyncio.wait_for(ws.recv(), 10) == f"late {i}"
        await ws.close()
        report["close_code"] = ws.close_code

    h.run_async(scenario(), timeout=90)
    h.log(f"slow upgrade: {report}")
    assert report["restart_s"] < report["opened_s"], report  # the restart came first
    assert report["handed_in"] == 1 and report["lost"] == 0, report
    assert report["close_code"] == 1000, report
    _settled(inst, inst.status()["generation"], 0)
    inst.stop()


class TlsByHand:
    """A TLS client over a plain socket through memory BIOs, so a test decides when each of
    its bytes goes out (half a ClientHello now, the rest later)."""

    def __init__(self, pki, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = _client_context(pki).wrap_bio(self.incoming, self.outgoing,
                                                 server_hostname="alpha.test")

    def client_hello(self):
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def _feed(self):
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
            raise EOFError("the server closed the connection")
        self.incoming.write(data)

    def finish_handshake(self):
        while True:
            try:
                self.tls.do_handshake()
                self.sock.sendall(self.outgoing.read())
                return
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                self._feed()

    def send(self, data):
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def read_exactly(self, n):
        out = b""
        while len(out) < n:
            try:
                out += self.tls.read(n - len(out))
            except ssl.SSLWantReadError:
                self._feed()
        return out


def test_tls_clients_in_their_handshake_at_a_restart_finish_or_close_within_the_drain_timeout():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    b1 = h.EchoBackend()
    port = h.free_port()
    drain_s = 3
    inst = h.Instance([b1], workers=2,
                      extra=[*_tls_flags(alpha), "--drain-timeout", f"{drain_s}s",
                             "--handshake-timeout", "60s", "--admin", f"127.0.0.1:{port}",
                             "--admin-token", ADMIN_TOKEN])
    finishing, stalled = TlsByHand(pki, inst.port), TlsByHand(pki, inst.port)
    for client in (finishing, stalled):
        hello = client.client_hello()
        client.sock.sendall(hello[:len(hello) // 2])
        client.rest = hello[len(hello) // 2:]
    h.wait_until(lambda: _live_connections(inst.status()) == 2, 10, 0.05, "both accepted")
    gen = inst.status()["generation"]
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r
    restarted = time.monotonic()
    _old_worker_holds(inst, gen, 2)
    # One finishes its handshake in the old worker and is served there: an upgrade and an echo.
    finishing.sock.sendall(finishing.rest)
    finishing.finish_handshake()
    request, _ = _upgrade_request("alpha.test")
    finishing.send(request)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += finishing.read_exactly(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    finishing.send(_masked_frame(0x1, b"served by the old worker"))
    assert _read_frame(finishing.read_exactly) == (0x1, b"served by the old worker")
    # TLS state does not move: both stay in the old worker until its drain deadline, where the
    # served one gets a close frame 1001 and the stalled one is closed; neither hangs.
    assert _read_frame(finishing.read_exactly) == (0x8, struct.pack("!H", 1001))
    finishing_closed = time.monotonic() - restarted
    stalled.sock.settimeout(drain_s + 10)
    try:
        while stalled.sock.recv(65536):  # an alert may come first
            pass
    except ConnectionResetError:
        pass
    stalled_closed = time.monotonic() - restarted
    s = _settled(inst, gen + 1, 0)
    h.log(f"tls in handshake: served one closed with 1001 after {finishing_closed:.1f} s, "
          f"stalled one after {stalled_closed:.1f} s (drain timeout {drain_s} s)")
    assert drain_s - 0.5 <= finishing_closed <= drain_s + 5, finishing_closed
    assert stalled_closed <= drain_s + 5, stalled_closed
    # Drained, not handed over, and not lost.
    assert sum(w["handed_in"] for w in s["workers"]) == 0 and s["handover_lost"] == 0, s
    closes = closes_by_cause(port)
    h.log(f"closes by cause: {closes}")
    assert closes["drain"] == 2 and sum(closes.values()) == 2, closes
    for client in (finishing, stalled):
        client.sock.close()
    inst.stop()


async def _get(reader, writer, target):
    """One GET on a kept-alive connection: its status line and body."""
    writer.write(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return await _response(reader)


async def _response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:")][0]
    return head.split(b"\r\n")[0], await reader.readexactly(length)


def test_kept_alive_http_connections_end_in_the_old_worker_while_tunnels_move():
    b1 = h.EchoBackend()
    port = h.free_port()
    inst = h.Instance([b1], workers=2, extra=["--drain-timeout", "60s",
                                              "--handshake-timeout", "60s", "--admin",
                                              f"127.0.0.1:{port}", "--admin-token", ADMIN_TOKEN])
    kept, tunnels = 10, 10

    async def scenario():
        idle = []
        for i in range(kept):
            reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
            status, _ = await _get(reader, writer, f"/kept/{i}")
            assert status == b"HTTP/1.1 200 OK", status
            idle.append((reader, writer))
        # One more has answered its first request and sent half of its next one.
        reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
        assert (await _get(reader, writer, "/first"))[0] == b"HTTP/1.1 200 OK"
        second = b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"
        writer.write(second[:12])
        half_way = (reader, writer)
        clients = [await websockets.connect(inst.url, ping_interval=None) for _ in range(tunnels)]
        s = await asyncio.to_thread(inst.status)
        assert _live_connections(s) == kept + 1 + tunnels, s["workers"]
        gen = s["generation"]
        r = await asyncio.to_thread(h.cli, "restart-workers", "--name", inst.name)
        assert r.returncode == 0, r
        # Each idle kept-alive connection is closed between its requests: an EOF, not a byte.
        for reader, writer in idle:
            assert await asyncio.wait_for(reader.read(), 15) == b""
            writer.close()
        # The one half way through a request is answered in full by the old worker, then ends.
        await asyncio.sleep(0.5)
        _old_worker_holds(inst, gen, 1)
        reader, writer = half_way
        writer.write(second[12:])
        status, _ = await asyncio.wait_for(_response(reader), 15)
        assert status == b"HTTP/1.1 200 OK", status
        assert await asyncio.wait_for(reader.read(), 15) == b""
        writer.close()
        # The tunnels moved, and the old generation left long before its drain deadline.
        s = await asyncio.to_thread(_settled, inst, gen + 1, tunnels)
        assert sum(w["handed_in"] for w in s["workers"]) == tunnels, s["workers"]
        assert s["handover_lost"] == 0, s
        for i, ws in enumerate(clients):
            await ws.send(f"moved {i}")
            assert await asyncio.wait_for(ws.recv(), 10) == f"moved {i}"
            await ws.close()

    h.run_async(scenario(), timeout=90)
    _settled(inst, inst.status()["generation"], 0)
    # The kept-alive ones ended because the worker drained (the one answered last too); the
    # tunnels ended where their clients closed them, in the new generation.
    closes = closes_by_cause(port)
    h.log(f"kept-alive: closes {closes}")
    assert closes["drain"] == kept + 1 and closes["client"] == tunnels, closes
    assert sum(closes.values()) == kept + 1 + tunnels, closes
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
