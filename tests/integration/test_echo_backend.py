"""wslb-echo, the demo and benchmark backend, driven as a user would: a third-party WebSocket
client (python3-websockets), plain HTTP over a socket, raw TCP with a 64 MiB checksum, PROXY
headers, the black hole, several processes, and a clean exit on SIGTERM."""

import asyncio
import hashlib
import json
import os
import signal
import socket

import websockets

import harness
from harness import EchoBackend, run_async


def http_get(port, head, read_until_close=True):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if not read_until_close and b"\r\n\r\n" in data:
                head_part, _, body = data.partition(b"\r\n\r\n")
                length = int([l for l in head_part.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                if len(body) >= length:
                    break
        return data


def test_websocket_echo_whoami_ping_and_close():
    b = EchoBackend(ident="ws1")

    async def go():
        async with websockets.connect(f"ws://{b.address}/chat", extra_headers={"X-Test": "yes"},
                                      max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            big = os.urandom(300_000)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "ments"])
            assert await ws.recv() == "fragments"
            await ws.send("whoami")
            who = json.loads(await ws.recv())
            assert who["id"] == "ws1", who
            assert who["headers"]["x-test"] == "yes", who
            assert who["proxy"] is None, who
            await asyncio.wait_for(await ws.ping(b"p"), 5)
            await ws.close(code=4001)
            assert ws.close_code == 4001, ws.close_code

    run_async(go(), 30)


def test_plain_http_keep_alive_and_status():
    b = EchoBackend(ident="h1", extra=["--http-status", "503"])
    req = b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n"
    last = b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    data = http_get(b.port, req + req + last)
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 3, data
    assert all(a.startswith(b"503 ") for a in answers), data
    body = json.loads(answers[0].split(b"\r\n\r\n", 1)[1][: int(answers[0].split(b"Content-Length: ")[1].split(b"\r\n")[0])])
    assert body == {"id": "h1", "method": "GET", "target": "/x?y=1",
                    "headers": {"host": "a", "x-a": "b"}, "proxy": None}, body


def test_raw_tcp_64mib_is_echoed_with_backpressure():
    b = EchoBackend()
    data = os.urandom(64 << 20)
    want = hashlib.sha256(data).hexdigest()
    s = socket.create_connection(("127.0.0.1", b.port), timeout=30)
    n, got = harness.echo_through(s, data, shut_write=True)
    s.close()
    assert n == len(data) and got == want, (n, len(data))


def test_proxy_protocol_v1_and_v2_are_stripped_and_reported():
    b = EchoBackend(ident="pp", extra=["--proxy-protocol"])
    v1 = b"PROXY TCP4 192.0.2.9 127.0.0.1 40001 80\r\n"
    data = http_get(b.port, v1 + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["proxy"] == {"version": 1, "src": "192.0.2.9:40001", "dst": "127.0.0.1:80"}, body
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    v2 = sig + bytes([0x21, 0x11, 0, 12]) + bytes([10, 0, 0, 7, 127, 0, 0, 1]) + (5555).to_bytes(2, "big") + (443).to_bytes(2, "big")
    data = http_get(b.port, v2 + b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["proxy"] == {"version": 2, "src": "10.0.0.7:5555", "dst": "127.0.0.1:443"}, body
    # Without the header the connection is dropped unanswered.
    assert http_get(b.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b""


def test_black_hole_accepts_and_never_answers():
    b = EchoBackend(extra=["--black-hole"])
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        harness.assert_silent(s, 1.0, "black hole answered or closed")


def test_processes_share_listeners_and_sigterm_exits_cleanly():
    ports = [harness.free_port(), harness.free_port()]
    ready = os.path.join(harness.RUNTIME_DIR, "multi.ready")
    argv = [harness.ECHO, "--processes", "3", "--id", "m", "--ready-file", ready]
    for p in ports:
        argv += ["--listen", f"127.0.0.1:{p}"]
    proc = harness.start_process(argv, log_path=os.path.join(harness.RUNTIME_DIR, "multi.log"))
    harness.wait_until(lambda: os.path.exists(ready), 10, what="ready file")
    with open(ready) as f:
        assert f.read().split() == [f"127.0.0.1:{p}" for p in ports]

    async def go():
        for p in ports:
            for _ in range(6):
                async with websockets.connect(f"ws://127.0.0.1:{p}/") as ws:
                    await ws.send("x")
                    assert await ws.recv() == "x"

    run_async(go(), 30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_bad_flags_exit_with_usage():
    import subprocess
    p = subprocess.run([harness.ECHO, "--listen", "nonsense"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "--listen" in p.stderr, (p.returncode, p.stderr)


if __name__ == "__main__":
    harness.main(globals())
