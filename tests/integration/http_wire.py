"""Small HTTP/1.1 pieces for the integration tests, written independently of wslb's parsers: a
reader for one request or response on a raw socket (Content-Length, chunked with trailers,
close-delimited, no body for HEAD / 1xx / 204 / 304), and a scripted backend that records
every request it gets, as it got it, and answers by request target."""

import json
import time

import harness


class Stream:
    """A socket with a read buffer: bytes read past one message stay for the next."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def read_until(self, marker):
        while marker not in self.buf:
            if not self._more():
                raise EOFError(f"closed before {marker!r}: {self.buf[:200]!r}")
        at = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:at], self.buf[at:]
        return out

    def read_exactly(self, n):
        while len(self.buf) < n:
            if not self._more():
                raise EOFError(f"closed {n - len(self.buf)} bytes short")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self):
        while self._more():
            pass
        out, self.buf = self.buf, b""
        return out

    def read_chunked(self):
        """A chunked body, raw (sizes, extensions, trailers included), and its decoded bytes."""
        raw = b""
        data = b""
        while True:
            line = self.read_until(b"\r\n")
            raw += line
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    t = self.read_until(b"\r\n")
                    raw += t
                    if t == b"\r\n":
                        return raw, data
            chunk = self.read_exactly(size + 2)
            raw += chunk
            data += chunk[:-2]


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return first, headers


def header(headers, name, default=None):
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return default


def read_response(st, head_request=False):
    """One response (a 1xx counts as one): dict status, headers, body, raw."""
    head = st.read_until(b"\r\n\r\n")
    first, headers = parse_head(head)
    status = int(first.split(" ")[1])
    raw = head
    body = b""
    if head_request or status // 100 == 1 or status in (204, 304):
        pass
    elif (header(headers, "transfer-encoding") or "").lower().endswith("chunked"):
        chunk_raw, body = st.read_chunked()
        raw += chunk_raw
    elif header(headers, "content-length") is not None:
        body = st.read_exactly(int(header(headers, "content-length")))
        raw += body
    else:
        body = st.read_to_close()
        raw += body
    return {"status": status, "headers": headers, "body": body, "raw": raw}


def read_request(st):
    """One request: dict method, target, headers, body (raw, framing included), or None at EOF."""
    try:
        head = st.read_until(b"\r\n\r\n")
    except EOFError:
        return None
    first, headers = parse_head(head)
    method, target, _ = first.split(" ", 2)
    body = b""
    if (header(headers, "transfer-encoding") or "").lower().endswith("chunked"):
        body, _ = st.read_chunked()
    elif header(headers, "content-length") is not None:
        body = st.read_exactly(int(header(headers, "content-length")))
    return {"method": method, "target": target, "headers": headers, "body": body}


class ScriptedBackend:
    """An HTTP/1.1 backend with keep-alive whose answer depends on the request target:
      /json (default)  200 with JSON {id, target, headers}
      /echo            200 whose body is the request body exactly as received (raw framing)
      /head            Content-Length: 1000 (no body for HEAD)
      /interim         100 Continue, 103 Early Hints, then 200
      /204, /304       no body (the 304 with a Content-Length of the representation)
      /chunked         a chunked answer with an extension and a trailer
      /close           200 without length, delimited by closing the connection
      /refuse          waits 0.3 s, records what arrived meanwhile, then 403
    `requests` lists every request as received; `early` what arrived while /refuse waited."""

    CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n")

    def __init__(self, ident):
        self.ident = ident
        self.requests = []
        self.early = []
        self.accepted = []  # every connection, appended by its thread (list.append is atomic)
        self.sock = harness.serve_loopback(self._one)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    @property
    def connections(self):
        return len(self.accepted)

    def _one(self, conn):
        self.accepted.append(conn)
        with conn:
            conn.settimeout(10)
            st = Stream(conn)
            try:
                while True:
                    req = read_request(st)
                    if req is None:
                        return
                    self.requests.append(req)
                    if not self._answer(conn, st, req):
                        return
            except (OSError, EOFError):
                return

    def _answer(self, conn, st, req):
        path = req["target"].split("?")[0]
        if path == "/echo":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(req["body"]) +
                         req["body"])
        elif path == "/head":
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
            conn.sendall(answer if req["method"] == "HEAD" else answer + b"x" * 1000)
        elif path == "/interim":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            time.sleep(0.05)
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        elif path == "/204":
            conn.sendall(b"HTTP/1.1 204 No Content\r\nX-Id: " + self.ident.encode() + b"\r\n\r\n")
        elif path == "/304":
            conn.sendall(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 5\r\n\r\n")
        elif path == "/chunked":
            conn.sendall(self.CHUNKED)
        elif path == "/close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 3000)
            return False
        elif path == "/refuse":
            time.sleep(0.3)
            conn.setblocking(False)
            try:
                st.buf += conn.recv(65536)
            except BlockingIOError:
                pass
            conn.setblocking(True)
            conn.settimeout(10)
            self.early.append(st.buf)
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n")
        else:
            body = json.dumps({"id": self.ident, "target": req["target"],
                               "headers": req["headers"]}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return True

    def close(self):
        self.sock.close()
