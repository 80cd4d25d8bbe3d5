"""Issue 10, limits that keep a worker safe: --max-connections and --max-connections-per-source
(503 in http mode, closed at once in tcp mode, counted), TCP keepalive with TCP_USER_TIMEOUT on
both sides by default, --idle-timeout within what the timer holds, --max-header-size above
http-parser's own 80 KiB limit. Real `wslb` binary and `wslb-echo` backends; `ss` shows the
kernel's view of the sockets."""

import socket
import subprocess

import harness as h
from http_wire import ScriptedBackend, Stream, read_response

UPGRADE = (b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def open_websocket(port, source="127.0.0.1"):
    """A raw WebSocket through wslb (kept open by the caller): (socket, status of the answer)."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(UPGRADE)
    return s, read_response(Stream(s))["status"]


def test_instance_and_source_limits_answer_503_and_count():
    b = h.EchoBackend()
    inst = h.Instance([b], workers=2, extra=["--max-connections", "3"])
    held = []
    for _ in range(3):
        s, status = open_websocket(inst.port)
        assert status == 101
        held.append(s)
    s, status = open_websocket(inst.port)
    assert status == 503, status
    s.close()
    assert inst.status()["errors"]["connection_limit"] == 1
    held.pop().close()
    h.wait_until(lambda: sum(w["connections"] for w in inst.status()["workers"]) == 2, 10,
                 what="a connection released")
    s, status = open_websocket(inst.port)
    assert status == 101, status  # room again
    held.append(s)
    for s in held:
        s.close()
    inst.stop()

    inst = h.Instance([b], workers=2, extra=["--max-connections-per-source", "2"])
    held = [open_websocket(inst.port)[0] for _ in range(2)]
    s, status = open_websocket(inst.port)
    assert status == 503, status
    s.close()
    # Another source address (loopback is 127.0.0.0/8) is not held back by the first one.
    other, status = open_websocket(inst.port, source="127.0.0.2")
    assert status == 101, status
    other.close()
    assert inst.status()["errors"]["source_limit"] == 1
    for s in held:
        s.close()
    inst.stop()


def test_tcp_mode_closes_clients_over_the_limit():
    b = h.EchoBackend()
    inst = h.Instance([b], workers=1, extra=["--mode", "tcp", "--max-connections", "1"])
    first = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
    assert h.echo_through(first, b"hello")[0] == 5
    second = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
    try:
        assert second.recv(10) == b""  # closed without a byte
    except ConnectionResetError:
        pass
    assert inst.status()["errors"]["connection_limit"] == 1
    first.close()
    inst.stop()


def keepalive_timers(port_filter):
    out = subprocess.run(["ss", "-tnoH", "state", "established", port_filter],
                         capture_output=True, text=True, check=True).stdout
    lines = [l for l in out.splitlines() if l.strip()]
    return lines, sum("timer:(keepalive" in l for l in lines)


def test_tcp_keepalive_on_both_sides_by_default():
    b = h.EchoBackend()
    for flag, expect_on in (([], True), (["--tcp-keepalive", "off"], False)):
        inst = h.Instance([b], workers=1, extra=flag)
        s, status = open_websocket(inst.port)
        assert status == 101
        # wslb's end of the client connection, and its end of the backend connection.
        client_side, client_ka = keepalive_timers(f"( sport = :{inst.port} )")
        backend_side, backend_ka = keepalive_timers(f"( dport = :{b.port} )")
        h.log(flag, client_side, backend_side)
        assert len(client_side) == 1 and len(backend_side) == 1, (client_side, backend_side)
        assert (client_ka, backend_ka) == ((1, 1) if expect_on else (0, 0)), (client_side,
                                                                              backend_side)
        s.close()
        inst.stop()


def test_timer_and_parser_bounds():
    b = h.EchoBackend()
    p = subprocess.run([h.WSLB, "run", "--backend", b.address, "--idle-timeout", "600h"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "--idle-timeout" in p.stderr and "596h" in p.stderr, p.stderr
    # A head of 150 KiB is above http-parser's own 80 KiB: --max-header-size decides.
    big_ok = ScriptedBackend("big")  # wslb-echo keeps to 16 KiB heads itself
    inst = h.Instance([big_ok.address], workers=1, extra=["--max-header-size", "256k", "--idle-timeout", "596h"])
    big = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: " + b"a" * (150 * 1024)
    with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
        s.sendall(big + b"\r\n\r\n")
        assert read_response(Stream(s))["status"] == 200
    with socket.create_connection(("127.0.0.1", inst.port), timeout=10) as s:
        s.sendall(big + b"a" * (110 * 1024) + b"\r\n\r\n")
        assert read_response(Stream(s))["status"] == 431
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
