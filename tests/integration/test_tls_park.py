"""Parked TLS 1.3 connections (--tls-park-after): once idle, a connection's SSL object is freed
and wslb carries its records itself. Real clients cannot tell: python ssl + websockets, openssl
s_client with its KeyUpdate commands, a hand-driven client whose record is tampered with, and
drains. Each test first waits until status says the connections are parked, so a test that
passes has gone through the parked record layer."""

import asyncio
import os
import socket
import ssl
import subprocess
import threading
import time

import websockets

import harness as h
from test_tls import _raw_wss, _strict_context, echo_text_and_binary
from tls_pki import TestPKI

PARK = ["--tls-park-after", "300ms"]


def _site():
    pki = TestPKI(os.path.join(h.RUNTIME_DIR, f"pki-{h.unique_name()}"))
    cert, key = pki.issue("alpha", ["alpha.test"])
    return pki, ["--tls-cert", cert, "--tls-key", key]


def _parked(inst):
    return inst.status()["tls"]["parked"]


def _connections(inst):
    return sum(w["connections"] for w in inst.status()["workers"])


def _wait_parked(inst, n):
    h.wait_until(lambda: _parked(inst) == n, 10, what=f"{n} connections parked")


def _read_frame(tls_sock, n):
    data = b""
    while len(data) < n:
        chunk = tls_sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_parked_wss_echo_1_byte_to_1_mib_ping_pong_and_clean_closes():
    pki, tls_flags = _site()
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=[*tls_flags, *PARK])
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    sizes = [1, 125, 126, 16383, 16384, 16385, 65536, 1 << 20]

    async def scenario():
        clients = []
        for _ in range(3):
            ws = await websockets.connect(f"wss://127.0.0.1:{inst.port}/", ssl=ctx,
                                          server_hostname="alpha.test", max_size=4 << 20)
            await ws.send("before")
            assert await ws.recv() == "before"
            clients.append(ws)
        await asyncio.to_thread(_wait_parked, inst, 3)
        for ws in clients:
            await echo_text_and_binary(ws, sizes)
            pong = await ws.ping(b"parked?")
            await asyncio.wait_for(pong, 10)
        # Idle again: still parked (a parked connection stays on its own record layer).
        await asyncio.sleep(0.8)
        assert await asyncio.to_thread(_parked, inst) == 3
        for ws in clients:
            await ws.close()
            assert ws.close_code == 1000, ws.close_code
    h.run_async(scenario(), timeout=120)
    h.wait_until(lambda: _parked(inst) == 0 and _connections(inst) == 0, 10,
                 what="the parked connections gone")
    tls = inst.status()["tls"]
    assert tls["failed"] == 0, tls
    inst.stop()


def test_close_notify_both_ways_on_a_parked_connection():
    pki, tls_flags = _site()
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=[*tls_flags, *PARK])
    ctx = _strict_context(pki)

    # The client closes the WebSocket; wslb answers with the backend's close frame, then
    # close_notify (recv gives b"", not SSLEOFError).
    tls_sock = _raw_wss(inst.port, ctx)
    _wait_parked(inst, 1)
    tls_sock.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close 1000, masked (zero key)
    assert _read_frame(tls_sock, 4)[:4] == b"\x88\x02\x03\xe8"
    assert tls_sock.recv(4096) == b""
    tls_sock.close()

    # The client sends close_notify first: wslb takes it as the end of the client's stream and
    # ends its side with close_notify too (unwrap() returns only once that arrived).
    tls_sock = _raw_wss(inst.port, ctx)
    _wait_parked(inst, 1)
    tls_sock.settimeout(10)
    raw = tls_sock.unwrap()
    assert raw.recv(4096) == b""  # then the FIN
    raw.close()
    h.wait_until(lambda: _connections(inst) == 0, 10, what="both closed")
    assert _parked(inst) == 0
    assert inst.status()["tls"]["failed"] == 0
    inst.stop()


class _SClient:
    """openssl s_client, its output read by a thread so the test can wait for lines."""

    def __init__(self, port, ca_file):
        self.proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "alpha.test",
             "-tls1_3", "-CAfile", ca_file, "-verify_return_error", "-crlf"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = b""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            with self.lock:
                self.out += chunk

    def text(self):
        with self.lock:
            return self.out.decode(errors="replace")

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_for(self, needle, what):
        h.wait_until(lambda: needle in self.text(), 15, what=what)


def test_s_client_idle_then_requests_key_updates_and_q():
    pki, tls_flags = _site()
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=[*tls_flags, *PARK])
    c = _SClient(inst.port, pki.ca_cert)
    c.wait_for("Verify return code: 0 (ok)", "the handshake")
    _wait_parked(inst, 1)
    c.send("GET /first HTTP/1.1\nHost: alpha.test\n")
    c.wait_for('"target":"/first"', "the first answer, parked")
    # 'K': a KeyUpdate asking for ours too; 'k': one that does not. Each time the next request
    # goes under the client's next key, and our answer (after our own KeyUpdate) under ours.
    for i, command in enumerate(["K", "k", "K"]):
        time.sleep(0.5)  # parked again in between is fine; it stays parked anyway
        # s_client takes a whole read of its input as the command: one at a time.
        updates = c.text().count("KEYUPDATE")
        c.send(command)
        h.wait_until(lambda: c.text().count("KEYUPDATE") > updates, 15,
                     what="s_client's KeyUpdate")
        c.send(f"GET /after-{i} HTTP/1.1\nHost: alpha.test\n")
        c.wait_for(f'"target":"/after-{i}"', f"the answer after KeyUpdate {command}")
    assert _parked(inst) == 1
    c.send("Q")
    assert c.proc.wait(timeout=15) == 0, c.text()[-2000:]
    h.wait_until(lambda: _connections(inst) == 0, 10, what="the close")
    assert _parked(inst) == 0
    assert inst.status()["tls"]["failed"] == 0
    inst.stop()


def _memory_client(port, pki):
    """A TLS 1.3 client whose records the test sends itself (ssl.MemoryBIO over a socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context(cafile=pki.ca_cert).wrap_bio(
        incoming, outgoing, server_hostname="alpha.test")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)
    sock.sendall(outgoing.read())
    return sock, obj, incoming, outgoing


def _plain_from(sock, obj, incoming, until):
    got = b""
    while until not in got:
        try:
            got += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        data = sock.recv(65536)
        assert data, got
        incoming.write(data)
    return got


def test_tampered_bytes_after_parking_close_the_connection_with_bad_record_mac():
    pki, tls_flags = _site()
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=[*tls_flags, *PARK])
    pid = inst.worker_pids()[0]
    sock, obj, incoming, outgoing = _memory_client(inst.port, pki)
    obj.write(b"GET /one HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
    sock.sendall(outgoing.read())
    assert b'"target":"/one"' in _plain_from(sock, obj, incoming, b'"target":"/one"')
    _wait_parked(inst, 1)
    obj.write(b"GET /two HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
    record = bytearray(outgoing.read())
    record[10] ^= 0x20  # inside the ciphertext
    sock.sendall(bytes(record))
    answer = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    incoming.write(answer)
    try:
        obj.read(65536)
        raise AssertionError("read after a tampered record")
    except ssl.SSLError as e:
        assert "BAD_RECORD_MAC" in str(e).upper(), e  # the alert, then the close
    sock.close()
    h.wait_until(lambda: _connections(inst) == 0, 10, what="the close")
    assert _parked(inst) == 0
    # The worker goes on: a fresh connection, parked in its turn, echoes.
    sock, obj, incoming, outgoing = _memory_client(inst.port, pki)
    _wait_parked(inst, 1)
    obj.write(b"GET /three HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
    sock.sendall(outgoing.read())
    assert b'"target":"/three"' in _plain_from(sock, obj, incoming, b'"target":"/three"')
    sock.close()
    assert inst.worker_pids() == [pid]
    inst.stop()


def test_a_drain_sends_parked_clients_1001_inside_tls_then_close_notify():
    pki, tls_flags = _site()
    backend = h.EchoBackend()
    for handover in ["on", "off"]:
        inst = h.Instance([backend], workers=1,
                          extra=[*tls_flags, *PARK, "--drain-timeout", "1s",
                                 "--handover", handover])
        ctx = _strict_context(pki)
        socks = [_raw_wss(inst.port, ctx) for _ in range(4)]
        _wait_parked(inst, 4)
        assert h.cli("restart-workers", "--name", inst.name).returncode == 0
        for s in socks:
            frame = _read_frame(s, 4)
            assert frame[:4] == b"\x88\x02\x03\xe9", (handover, frame)  # 1001, inside TLS
            assert s.recv(4096) == b"", handover  # close_notify, not a bare FIN
            s.close()
        inst.stop()


def test_tls12_connections_stay_on_openssl_and_work_past_the_park_point():
    pki, tls_flags = _site()
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=[*tls_flags, *PARK])
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    async def scenario():
        async with websockets.connect(f"wss://127.0.0.1:{inst.port}/", ssl=ctx,
                                      server_hostname="alpha.test") as ws:
            await ws.send("one")
            assert await ws.recv() == "one"
            await asyncio.sleep(1.2)
            assert await asyncio.to_thread(_parked, inst) == 0
            await ws.send("two")
            assert await ws.recv() == "two"
            assert ws.transport.get_extra_info("ssl_object").version() == "TLSv1.2"
    h.run_async(scenario(), timeout=60)
    inst.stop()


def test_tls_park_after_is_checked_and_0_turns_parking_off():
    pki, tls_flags = _site()
    r = h.cli("run", "--name", h.unique_name(), "--listen", f"127.0.0.1:{h.free_port()}",
              "--backend", "127.0.0.1:9", *tls_flags, "--tls-park-after", "soon", timeout=20)
    assert r.returncode == 2 and r.stderr.startswith("wslb run: --tls-park-after: "), r.stderr
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=[*tls_flags, "--tls-park-after", "0"])
    tls_sock = _raw_wss(inst.port, _strict_context(pki))
    time.sleep(1.5)
    assert _parked(inst) == 0
    tls_sock.close()
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
