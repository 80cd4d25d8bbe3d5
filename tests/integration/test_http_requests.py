"""Issue 10, every request is a request: on a kept-alive connection each request head is
parsed, checked and rewritten like the first; bodies and responses are framed so that the next
request is handled too; an upgrade becomes a tunnel only on a 101.
Real `wslb` binary; a scripted Python backend (tests/integration/http_wire.py) that records
each request as it arrived, and raw-socket clients that read responses with their own framing."""

import base64
import hashlib
import json
import socket
import threading

import harness as h
from http_wire import ScriptedBackend, Stream, header, read_response

SPOOF = (b"X-Real-IP: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"
         b"X_Real_IP: 10.0.0.1\r\nX_Forwarded_For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n")


def connect(inst):
    s = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
    return s, Stream(s)


def forwarding_of(req):
    """The forwarding headers a backend saw, lower-case name -> list of values."""
    names = ("x-real-ip", "x-forwarded-for", "x-forwarded-proto", "forwarded", "x-real-ip",
             "x_real_ip", "x_forwarded_for")
    out = {}
    for n, v in req["headers"]:
        if n.lower() in names:
            out.setdefault(n.lower(), []).append(v)
    return out


WSLB_VALUES = {"x-real-ip": ["127.0.0.1"], "x-forwarded-for": ["127.0.0.1"],
               "x-forwarded-proto": ["http"], "forwarded": ["for=127.0.0.1;proto=http"]}


def test_forwarding_headers_cannot_be_spoofed_on_later_requests():
    b = ScriptedBackend("b")
    inst = h.Instance([b.address], workers=1, extra=["--check", "none"])

    # Plain: GET /a, read the answer, then GET /b with spoofed headers on the same connection.
    s, st = connect(inst)
    s.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(st)["status"] == 200
    s.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\n" + SPOOF + b"\r\n")
    r = read_response(st)
    assert r["status"] == 200 and json.loads(r["body"])["target"] == "/b", r
    s.close()

    # Pipelined: three requests in one write, the middle one spoofed; answered in order.
    s, st = connect(inst)
    s.sendall(b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n"
              b"GET /p2 HTTP/1.1\r\nHost: t\r\n" + SPOOF + b"\r\n"
              b"GET /p3 HTTP/1.1\r\nHost: t\r\n" + SPOOF + b"Connection: close\r\n\r\n")
    targets = [json.loads(read_response(st)["body"])["target"] for _ in range(3)]
    assert targets == ["/p1", "/p2", "/p3"], targets
    assert st.read_to_close() == b""  # Connection: close honoured after the third answer
    s.close()

    seen = {r["target"]: forwarding_of(r) for r in b.requests}
    h.log("backend saw:", seen)
    for target in ("/a", "/b", "/p1", "/p2", "/p3"):
        assert seen[target] == WSLB_VALUES, (target, seen[target])
    assert b.connections == 2, b.connections  # one backend connection per client connection
    inst.stop()


def test_bodies_and_every_response_framing_pass_intact():
    b = ScriptedBackend("b")
    inst = h.Instance([b.address], workers=1, extra=["--check", "none"])
    s, st = connect(inst)

    # A chunked POST (extension, trailer) arrives exactly as sent, and is answered.
    chunked = b"4;x=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    r = read_response(st)
    assert r["status"] == 200 and r["body"] == chunked, r
    # A Content-Length POST sent in two writes.
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
    s.sendall(b"world")
    assert read_response(st)["body"] == b"helloworld"
    # HEAD: a Content-Length without a body; the next request is still understood.
    s.sendall(b"HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n")
    r = read_response(st, head_request=True)
    assert r["status"] == 200 and header(r["headers"], "content-length") == "1000", r
    # 1xx answers, then the final one.
    s.sendall(b"GET /interim HTTP/1.1\r\nHost: t\r\n\r\n")
    assert [read_response(st)["status"] for _ in range(3)] == [100, 103, 200]
    # 204 and 304 (with a Content-Length that is not a body).
    s.sendall(b"GET /204 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(st)["status"] == 204
    s.sendall(b"GET /304 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(st)["status"] == 304
    # A chunked answer, byte for byte.
    s.sendall(b"GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n")
    r = read_response(st)
    assert r["raw"] == ScriptedBackend.CHUNKED and r["body"] == b"hello world", r
    # Still one connection, still forwarding headers on each request.
    s.sendall(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
    assert json.loads(read_response(st)["body"])["target"] == "/json"
    # A close-delimited answer: all of it, then the connection ends.
    s.sendall(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
    r = read_response(st)
    assert r["status"] == 200 and r["body"] == b"y" * 3000, len(r["body"])
    assert st.closed
    s.close()
    assert b.connections == 1, b.connections
    assert [r["target"] for r in b.requests] == ["/echo", "/echo", "/head", "/interim", "/204",
                                                 "/304", "/chunked", "/json", "/close"]
    assert all(forwarding_of(r) == WSLB_VALUES for r in b.requests)
    inst.stop()


def test_upgrade_only_on_101():
    b = ScriptedBackend("b")
    inst = h.Instance([b.address], workers=1, extra=["--check", "none"])
    s, st = connect(inst)
    # An upgrade request the backend refuses, with the next request right behind it: nothing
    # of it may reach the backend before the answer, and afterwards it is a request like any.
    s.sendall(b"GET /refuse HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
              b"GET /after HTTP/1.1\r\nHost: t\r\n" + SPOOF + b"\r\n")
    r = read_response(st)
    assert r["status"] == 403, r
    r = read_response(st)
    assert r["status"] == 200 and json.loads(r["body"])["target"] == "/after", r
    assert b.early == [b""], b.early
    assert forwarding_of(b.requests[-1]) == WSLB_VALUES
    # The refused upgrade request itself reached the backend as an upgrade.
    first = b.requests[0]
    assert header(first["headers"], "upgrade") == "websocket", first
    assert header(first["headers"], "connection") == "Upgrade", first
    s.close()
    inst.stop()


def test_later_requests_get_the_same_error_answers():
    b = ScriptedBackend("b")
    inst = h.Instance([b.address], workers=1,
                      extra=["--check", "none", "--max-header-size", "1k"])
    for bad, status in ((b"GET /x HTTP/1.1\r\n\r\n", 400),                      # no Host
                        (b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
                         431),
                        (b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400)):
        s, st = connect(inst)
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(st)["status"] == 200
        s.sendall(bad)
        r = read_response(st)
        assert r["status"] == status, (bad[:40], r)
        assert st.read_to_close() == b""
        s.close()
    errors = inst.status()["errors"]
    assert errors["400_bad_request"] == 2 and errors["431_header_too_large"] == 1, errors
    inst.stop()



class RawWebSocketBackend:
    """Answers one WebSocket handshake with 101, then records every byte it receives."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.received = b""
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(15)
            st = Stream(conn)
            head = st.read_until(b"\r\n\r\n").decode("latin-1")
            key = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
                   if l.lower().startswith("sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
            self.received = st.buf
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.received += chunk
            except OSError:
                pass
        self.done.set()


def masked_text_frame(payload, mask=b"\x01\x02\x03\x04"):
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def test_client_bytes_sent_before_the_101_are_frame_tracked():
    # A client that sends the start of a frame right behind its upgrade request (before the
    # 101), the rest after it: wslb's frame tracker must count the early bytes too, or it
    # would read the frame's tail as a frame header and never find the boundary where the
    # drain's close frame goes.
    b = RawWebSocketBackend()
    # The drain is under test here: a handover would move the tunnel instead of closing it.
    inst = h.Instance([b.address], workers=1,
                      extra=["--check", "none", "--drain-timeout", "300ms", "--handover", "off"])
    frame = masked_text_frame(b"0123456789")
    s, st = connect(inst)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" +
              frame[:9])
    assert read_response(st)["status"] == 101
    s.sendall(frame[9:])
    h.wait_until(lambda: len(b.received) >= len(frame), 10, what="the frame at the backend")
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    # At the drain deadline both directions are at a boundary: a close frame (1001) each way.
    assert st.read_exactly(4) == b"\x88\x02\x03\xe9"
    assert b.done.wait(15), "backend connection not closed"
    h.log("backend received", b.received)
    # The whole client frame, then wslb's masked close frame 1001, and nothing in between.
    assert b.received[:len(frame)] == frame, b.received
    rest = b.received[len(frame):]
    assert len(rest) == 8 and rest[:2] == b"\x88\x82", rest
    code = bytes(x ^ rest[2 + i % 4] for i, x in enumerate(rest[6:8]))
    assert code == b"\x03\xe9", code
    s.close()
    inst.stop()


def test_a_draining_worker_ends_kept_alive_connections_between_requests():
    b = ScriptedBackend("b")
    # Neither the drain deadline nor the keep-alive timeout (--handshake-timeout) comes first.
    inst = h.Instance([b.address], workers=1,
                      extra=["--check", "none", "--drain-timeout", "60s",
                             "--handshake-timeout", "60s"])
    idle, idle_st = connect(inst)
    idle.sendall(b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(idle_st)["status"] == 200
    busy, busy_st = connect(inst)
    busy.sendall(b"GET /refuse HTTP/1.1\r\nHost: t\r\n\r\n")  # answered after 0.3 s
    # The request must be in flight when the drain begins, or the connection is idle too.
    h.wait_until(lambda: any(r["target"] == "/refuse" for r in b.requests), 10,
                 what="the busy request at the backend")
    old = inst.worker_pids()
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    # The idle one is closed at once; the busy one gets its answer, then the close.
    assert idle_st.read_to_close() == b""
    assert read_response(busy_st)["status"] == 403
    assert busy_st.read_to_close() == b""
    idle.close()
    busy.close()
    # So the old worker exits long before its 60 s drain deadline.
    h.wait_until(lambda: all(h.process_gone(p) for p in old), 15, what="old worker gone")
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
