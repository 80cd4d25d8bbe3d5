"""Issue 13 point 9, the access log (`--access-log PATH|-`): with the real binary, real
sockets and real signals. A churn of connections of each kind over several workers leaves
exactly one JSON line per request (http) or per connection (websocket, tcp), with the bytes
each way, the status, the close code and the backend the client saw; a rotation (rename, then
SIGUSR1 to the master) during a churn loses no line; a hostile request stays one valid line;
a bad path exits 2 naming the flag; with --user the file belongs to that user; a tunnel handed
over to a new generation has one line, from its accept; a drained WebSocket logs the 1001 wslb
sent; a reload moves the log, and a path that cannot be opened refuses the reload."""

import base64
import grp
import json
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import admin_client as a
import harness as h
import http_wire


def read_lines(*paths):
    """Every line of the files, each parsed as JSON (a line that is not JSON fails the test)."""
    lines = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        assert data == b"" or data.endswith(b"\n"), f"{path} ends inside a line: {data[-80:]!r}"
        for raw in data.split(b"\n")[:-1]:
            lines.append(json.loads(raw.decode("utf-8")))
    return lines


def wait_lines(path, count, timeout=15):
    """Waits until `path` holds at least `count` lines (the workers flush every 200 ms)."""
    def enough():
        with open(path, "rb") as f:
            return f.read().count(b"\n") >= count
    h.wait_until(enough, timeout, what=f"{count} lines in {path}")
    return read_lines(path)


def http_response(sock, pending=b""):
    """One response with Content-Length from `sock`: (its bytes, its status)."""
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed inside a response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed inside a response body"
        body += chunk
    assert len(body) == length, "more than one response arrived"
    return head + b"\r\n\r\n" + body, int(head.split(b" ")[1])


def masked_frame(opcode, payload):
    mask = os.urandom(4)
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def http_exchange(port, requests):
    """One connection, the requests one after another (each answered before the next):
    returns [(bytes sent, bytes received, status)]."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        for req in requests:
            c.sendall(req)
            got, status = http_response(c)
            out.append((len(req), len(got), status))
    return out


def websocket_session(port, close_code):
    """A raw WebSocket client: handshake, one echoed message, a close frame with
    `close_code`, then reads until the connection ends. Returns (bytes sent, bytes received)."""
    key = base64.b64encode(os.urandom(16)).decode()
    hello = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    message = masked_frame(0x1, b"hello access log")
    close = masked_frame(0x8, struct.pack("!H", close_code) + b"bye")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        stream = http_wire.Stream(c)
        c.sendall(hello)
        received = stream.read_until(b"\r\n\r\n")
        assert received.startswith(b"HTTP/1.1 101"), received
        c.sendall(message)
        received += stream.read_exactly(2 + 16)  # the echo, unmasked
        c.sendall(close)
        received += stream.read_to_close()
    return len(hello) + len(message) + len(close), len(received)


def tcp_session(port, size):
    payload = b"\x00\x01raw" + os.urandom(size - 5) + b"\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        got, _ = h.echo_through(c, payload, shut_write=True)
    return len(payload), got


def run_threads(count, target, concurrency=6):
    """Runs target(i) for i in range(count) over `concurrency` threads; returns the results
    in order (an exception in any of them fails the test)."""
    results = [None] * count
    errors = []
    lock = threading.Lock()
    next_i = [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= count:
                return
            try:
                results[i] = target(i)
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                errors.append(f"{i}: {type(e).__name__}: {e}")
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    return results


def test_churn_of_each_kind_gives_one_line_per_request_and_connection():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    backends = {b1.address, b2.address}
    path = os.path.join(h.RUNTIME_DIR, "churn-access.log")
    # The path from a config file: the flag is a config key like the others.
    conf = os.path.join(h.RUNTIME_DIR, "access.toml")
    with open(conf, "w") as f:
        f.write(f'access-log = "{path}"\n')
    inst = h.Instance([b1, b2], workers=3, extra=["--config", conf])
    n = 30
    get = (f"GET /page?n=1 HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\n"
           "User-Agent: access-test/1\r\n\r\n").encode()
    last = (f"GET /last HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\n"
            "Connection: close\r\n\r\n").encode()
    # http: two requests on one kept-alive connection, the second asking to close.
    http_results = run_threads(n, lambda i: http_exchange(inst.port, [get, last]))
    ws_results = run_threads(n, lambda i: websocket_session(inst.port, 4000 + i))
    lines = wait_lines(path, 3 * n)
    time.sleep(0.5)  # nothing more is coming
    lines = read_lines(path)
    assert len(lines) == 3 * n, f"{len(lines)} lines for {3 * n} requests and connections"
    http_lines = [x for x in lines if x["kind"] == "http"]
    ws_lines = [x for x in lines if x["kind"] == "websocket"]
    assert len(http_lines) == 2 * n and len(ws_lines) == n, (len(http_lines), len(ws_lines))
    for x in lines:
        assert set(x) == {"time", "client", "forwarded_for", "backend", "kind", "method", "path",
                          "host", "user_agent", "status", "duration_ms", "bytes_in",
                          "bytes_out", "close_cause", "ws_close_code", "worker"}, x
        assert x["backend"] in backends, x
        assert x["client"].startswith("127.0.0.1:"), x
        assert x["forwarded_for"] is None, x
        assert time.strptime(x["time"], "%Y-%m-%dT%H:%M:%S.%f" + "Z") and x["time"][-5] == ".", x
        assert 0 <= x["duration_ms"] < 10_000, x
    first = [x for x in http_lines if x["path"] == "/page?n=1"]
    closing = [x for x in http_lines if x["path"] == "/last"]
    assert len(first) == n and len(closing) == n
    sent_get, got_get = http_results[0][0][0], {r[0][1] for r in http_results}
    assert len(got_get) == 1, got_get  # the echo's answer has the same length every time
    for x in first:
        assert (x["method"], x["status"], x["close_cause"], x["ws_close_code"]) == \
            ("GET", 200, None, None), x
        assert x["user_agent"] == "access-test/1" and x["host"] == f"127.0.0.1:{inst.port}", x
        assert x["bytes_in"] == sent_get and x["bytes_out"] in got_get, x
    sent_last, got_last = len(last), {r[1][1] for r in http_results}
    for x in closing:
        assert x["status"] == 200 and x["close_cause"] in ("client", "backend"), x
        assert x["bytes_in"] == sent_last and x["bytes_out"] in got_last, x
    # Each WebSocket: its own close code, the bytes the client counted, its backend.
    by_code = {x["ws_close_code"]: x for x in ws_lines}
    assert sorted(by_code) == [4000 + i for i in range(n)], sorted(by_code)
    for i, (sent, received) in enumerate(ws_results):
        x = by_code[4000 + i]
        assert (x["status"], x["close_cause"], x["path"]) == (101, "client", "/ws"), x
        assert (x["bytes_in"], x["bytes_out"]) == (sent, received), (x, sent, received)
    workers = {x["worker"] for x in lines}
    h.log(f"lines by worker slot: { {w: sum(x['worker'] == w for x in lines) for w in workers} }")
    assert len(workers) >= 2, f"one worker took every connection: {workers}"

    # tcp mode: one line per connection, the bytes both ways, no status.
    tcp_path = os.path.join(h.RUNTIME_DIR, "tcp-access.log")
    tcp = h.Instance([b1, b2], workers=2, extra=["--mode", "tcp", "--access-log", tcp_path])
    tcp_results = run_threads(n, lambda i: tcp_session(tcp.port, 100 + i))
    tcp_lines = wait_lines(tcp_path, n)
    time.sleep(0.5)
    tcp_lines = read_lines(tcp_path)
    assert len(tcp_lines) == n, len(tcp_lines)
    assert sorted(x["bytes_in"] for x in tcp_lines) == sorted(r[0] for r in tcp_results)
    for x in tcp_lines:
        assert x["kind"] == "tcp" and x["status"] is None and x["method"] is None, x
        assert x["bytes_out"] == x["bytes_in"] and x["backend"] in backends, x
        assert x["close_cause"] in ("client", "backend"), x
    inst.stop()
    tcp.stop()


def test_rotation_during_churn_loses_no_line():
    b = h.EchoBackend()
    path = os.path.join(h.RUNTIME_DIR, "rotate-access.log")
    inst = h.Instance([b], workers=3, extra=["--access-log", path])
    request = b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    done = []
    stop = threading.Event()
    errors = []

    def client():
        while not stop.is_set():
            try:
                [(_, _, status)] = http_exchange(inst.port, [request])
                done.append(status)
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                errors.append(f"{type(e).__name__}: {e}")
    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    rotated = []
    try:
        for k in range(3):
            time.sleep(1.0)
            rotated.append(f"{path}.{k + 1}")
            os.rename(path, rotated[-1])  # what logrotate does, then it signals the master
            if k == 1:
                r = h.cli("reopen-logs", "--name", inst.name)
                assert r.returncode == 0 and "3 workers reopen" in r.stdout, (r.stdout, r.stderr)
            else:
                inst.proc.send_signal(signal.SIGUSR1)
            h.wait_until(lambda: os.path.exists(path), 10, what="the access log reopened")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:5]
    inst.stop()  # the workers write what they still hold before they exit
    assert inst.proc.returncode == 0, inst.log()
    per_file = {p: len(read_lines(p)) for p in rotated + [path]}
    h.log(f"{len(done)} requests; lines per file: {per_file}")
    lines = read_lines(*rotated, path)
    assert len(lines) == len(done), f"{len(lines)} lines for {len(done)} requests"
    assert all(x["status"] == 200 and x["path"] == "/r" for x in lines)
    assert all(count > 0 for count in per_file.values()), per_file
    assert inst.log().count("reopen the access log") == 3, inst.log()


def test_hostile_request_stays_one_valid_line():
    b = h.EchoBackend()
    path = os.path.join(h.RUNTIME_DIR, "hostile-access.log")
    inst = h.Instance([b], workers=1, extra=["--access-log", path])
    forged = b'x","status":999,"kind":"forged"} {"time":"'
    hostile = [
        # Quotes, a backslash, braces and bytes that are not UTF-8 in the path; a header
        # value that tries to close the string and start fields of its own.
        b'GET /a"b\\c{}\xff\xfe%0A?q="x" HTTP/1.1\r\nHost: h"\\\r\nUser-Agent: ' + forged +
        b"\xc3\xa9\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
        # Control bytes inside a header value: refused (400), still one line.
        b"GET /ctl HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x01\x7fb\r\n\r\n",
        # A bare LF and a NUL inside the request line: refused, still one line.
        b"GET /line\nbreak\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        # Control bytes where a header name goes.
        b"GET / HTTP/1.1\r\nHo\x1bst: x\r\n\r\n",
    ]
    for req in hostile:
        a.raw_request(inst.port, req)
    lines = wait_lines(path, len(hostile))
    time.sleep(0.5)
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.count(b"\n") == len(hostile), raw
    lines = read_lines(path)
    x = lines[0] if lines[0]["path"] else next(y for y in lines if y["path"])
    assert x["path"] == '/a"b\\c{}\xff\xfe%0A?q="x"', x["path"]
    assert x["host"] == 'h"\\', x
    assert x["user_agent"] == forged.decode() + "\u00e9", x["user_agent"]
    assert x["status"] == 200 and x["kind"] == "http", x
    assert x["forwarded_for"] is None, x  # not from a trusted proxy: not an origin
    assert {y["status"] for y in lines} - {200} <= {400}, lines
    assert not any(y.get("kind") == "forged" or y["status"] == 999 for y in lines), lines


def test_a_full_disk_loses_the_lines_counted_and_the_worker_serves_on():
    """The access log on a device where every write fails with ENOSPC (/dev/full, as a full
    disk does): every request is still answered by the same worker, and the worker's log
    counts the lines it could not write, exactly, with the error."""
    b = h.EchoBackend()
    inst = h.Instance([b], workers=1, extra=["--access-log", "/dev/full"])
    [pid] = inst.worker_pids()
    n = 40
    get = f"GET /full HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\n\r\n".encode()
    last = (f"GET /full HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\n"
            "Connection: close\r\n\r\n").encode()
    results = run_threads(n // 2, lambda i: http_exchange(inst.port, [get, last]))
    assert [status for r in results for _, _, status in r] == [200] * n, results

    def lost():
        counts = [int(m) for m in re.findall(
            r"access log '/dev/full': write failed: no space left on device \((\d+) lines lost\)",
            inst.log())]
        return sum(counts) if sum(counts) >= n else None
    assert h.wait_until(lost, 15, what=f"{n} lost lines reported") == n, inst.log()[-3000:]
    assert inst.worker_pids() == [pid]
    [(_, _, status)] = http_exchange(inst.port, [last])
    assert status == 200
    inst.stop()


def test_a_disk_that_fills_mid_write_leaves_whole_lines_and_counts_the_lost_ones():
    """The access log on a 64 KiB tmpfs with one page left: the write that fills it stops
    inside a line. Every request is answered; once space is freed the rest of that line is
    written first, so the file holds only whole JSON lines, and the lines in it plus those the
    worker reports lost are exactly the requests made."""
    if os.geteuid() != 0:
        h.log("SKIP: needs root (mount)")
        return
    mnt = os.path.join(h.RUNTIME_DIR, "small-disk")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        path = os.path.join(mnt, "access.log")
        filler = os.path.join(mnt, "filler")
        b = h.EchoBackend()
        inst = h.Instance([b], workers=1, extra=["--access-log", path])
        with open(filler, "wb") as f:
            f.write(b"x" * (60 * 1024))  # one 4 KiB page left for the log
        get = (f"GET /{'p' * 200} HTTP/1.1\r\nHost: 127.0.0.1:{inst.port}\r\n"
               "Connection: close\r\n\r\n").encode()
        n = 60  # about 20 KiB of lines, written in one or a few flushes
        results = run_threads(n, lambda i: http_exchange(inst.port, [get]))
        assert [status for r in results for _, _, status in r] == [200] * n

        def reported():
            return sum(int(m) for m in re.findall(r"write failed: no space left on device "
                                                   r"\((\d+) lines lost\)", inst.log()))
        h.wait_until(reported, 15, what="lost lines reported")
        os.unlink(filler)
        more = 10
        run_threads(more, lambda i: http_exchange(inst.port, [get]))
        inst.stop()  # the worker writes what it holds as it exits
        assert inst.proc.returncode == 0, inst.log()[-2000:]
        lines = read_lines(path)  # each one whole JSON, the file ending with a newline
        lost = reported()
        h.log(f"{len(lines)} lines in the file, {lost} reported lost, of {n + more} requests")
        assert len(lines) + lost == n + more, (len(lines), lost)
        assert lost > 0 and len(lines) > more, (len(lines), lost)
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def test_bad_path_exits_2_naming_the_flag():
    r = h.cli("run", "--backend", "127.0.0.1:9001", "--access-log", "/nonexistent-dir/a.log")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--access-log" in r.stderr and "No such file or directory" in r.stderr, r.stderr
    r = h.cli("run", "--backend", "127.0.0.1:9001", "--access-log", h.RUNTIME_DIR)
    assert r.returncode == 2 and "--access-log" in r.stderr, r.stderr
    conf = os.path.join(h.RUNTIME_DIR, "bad-access.toml")
    with open(conf, "w") as f:
        f.write('access-log = "/nonexistent-dir/b.log"\n')
    r = h.cli("run", "--backend", "127.0.0.1:9001", "--config", conf)
    assert r.returncode == 2 and "access-log" in r.stderr and conf in r.stderr, r.stderr


def test_standard_output():
    b = h.EchoBackend()
    inst = h.Instance([b], workers=1, extra=["--access-log", "-"])
    [(_, _, status)] = http_exchange(inst.port, [b"GET /stdout HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert status == 200

    def logged():
        return [json.loads(line) for line in inst.log().splitlines() if line.startswith("{")]
    lines = h.wait_until(logged, 10, what="a JSON line on standard output")
    assert lines[0]["path"] == "/stdout" and lines[0]["status"] == 200, lines


def test_user_owns_the_file():
    if os.geteuid() != 0:
        h.log("SKIP: needs root")
        return
    # nobody must reach paths under the test's runtime directory; the instances of the other
    # tests need it private again afterwards.
    os.chmod(h.RUNTIME_DIR, 0o711)
    try:
        user_owns_the_file()
    finally:
        os.chmod(h.RUNTIME_DIR, 0o700)


def user_owns_the_file():
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrgid(nobody.pw_gid).gr_name
    runtime = os.path.join(h.RUNTIME_DIR, "nobody-run")
    os.makedirs(runtime, mode=0o700)
    os.chown(runtime, nobody.pw_uid, nobody.pw_gid)
    # A directory nobody cannot write in: the master creates the file as root and gives it away.
    logs = os.path.join(h.RUNTIME_DIR, "root-logs")
    os.makedirs(logs, mode=0o755)
    path = os.path.join(logs, "access.log")
    b = h.EchoBackend()
    port = h.free_port()
    log_path = os.path.join(h.RUNTIME_DIR, "user-access.log")
    proc = h.start_process([h.WSLB, "run", "--name", h.unique_name("alu"), "--listen",
                            f"127.0.0.1:{port}", "--backend", b.address, "--workers", "1",
                            "--user", f"nobody:{nogroup}", "--access-log", path],
                           log_path=log_path, env=dict(os.environ, WSLB_RUNTIME_DIR=runtime))

    def served():
        assert proc.poll() is None, open(log_path).read()
        try:
            return http_exchange(port, [b"GET /u HTTP/1.1\r\nHost: x\r\n\r\n"])
        except OSError:
            return None
    h.wait_until(served, 15, what="a request served")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), st
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, open(log_path).read()
    assert [x["path"] for x in read_lines(path)] == ["/u"]


def test_a_tunnel_handed_over_has_one_line_from_its_accept():
    b = h.EchoBackend()
    path = os.path.join(h.RUNTIME_DIR, "handover-access.log")
    inst = h.Instance([b], workers=2, extra=["--access-log", path])
    k = 6
    open_sessions = []
    for i in range(k):
        c = socket.create_connection(("127.0.0.1", inst.port), timeout=10)
        stream = http_wire.Stream(c)
        key = base64.b64encode(os.urandom(16)).decode()
        hello = (f"GET /held/{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        c.sendall(hello)
        received = stream.read_until(b"\r\n\r\n")
        message = masked_frame(0x1, b"before the restart")
        c.sendall(message)
        received += stream.read_exactly(2 + 18)
        open_sessions.append([c, stream, len(hello) + len(message), len(received)])
    opened = time.monotonic()
    old = set(inst.worker_pids())
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    h.wait_until(lambda: not old & set(inst.worker_pids("draining") + inst.worker_pids()), 15,
                 what="the old generation gone")
    handed_in = sum(w["handed_in"] for w in inst.status()["workers"])
    assert handed_in == k, f"{handed_in} of {k} tunnels handed over"
    with open(path, "rb") as f:
        assert f.read() == b"", "a handed-over tunnel was logged as ended"
    # Its line covers it from its accept, not from the handover.
    held_ms = (time.monotonic() - opened) * 1000
    for i, entry in enumerate(open_sessions):
        c, stream, sent, received = entry
        message = masked_frame(0x1, b"after")
        close = masked_frame(0x8, struct.pack("!H", 4100 + i))
        c.sendall(message)
        received += len(stream.read_exactly(2 + 5))
        c.sendall(close)
        received += len(stream.read_to_close())
        c.close()
        entry[2:] = [sent + len(message) + len(close), received]
    lines = wait_lines(path, k)
    time.sleep(0.5)
    lines = read_lines(path)
    assert len(lines) == k, lines
    h.log(f"held {held_ms:.1f} ms; durations {sorted(x['duration_ms'] for x in lines)}")
    new_slots = {w["slot"] for w in inst.status()["workers"] if w["state"] == "running"}
    for x in lines:
        i = int(x["path"].rsplit("/", 1)[1])
        _, _, sent, received = open_sessions[i]
        assert (x["kind"], x["status"], x["ws_close_code"]) == ("websocket", 101, 4100 + i), x
        assert (x["bytes_in"], x["bytes_out"]) == (sent, received), (x, sent, received)
        assert x["client"].startswith("127.0.0.1:") and x["worker"] in new_slots, (x, new_slots)
        assert x["close_cause"] == "client" and x["duration_ms"] >= held_ms, (x, held_ms)


def test_a_drained_websocket_logs_the_close_code_wslb_sent():
    b = h.EchoBackend()
    path = os.path.join(h.RUNTIME_DIR, "drain-access.log")
    inst = h.Instance([b], workers=1, extra=["--access-log", path, "--handover", "off",
                                             "--drain-timeout", "1s"])
    clients = []
    for i in range(2):
        c = socket.create_connection(("127.0.0.1", inst.port), timeout=15)
        stream = http_wire.Stream(c)
        key = base64.b64encode(os.urandom(16)).decode()
        c.sendall((f"GET /drained/{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        assert stream.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101")
        clients.append((c, stream))
    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    for c, stream in clients:
        # At the drain deadline: a close frame 1001 (going away), then the connection ends.
        rest = stream.read_to_close()
        assert rest[:4] == b"\x88\x02\x03\xe9", rest
        c.close()
    lines = wait_lines(path, 2)
    time.sleep(0.5)
    lines = read_lines(path)
    assert len(lines) == 2, lines
    for x in lines:
        assert (x["close_cause"], x["ws_close_code"], x["status"]) == ("drain", 1001, 101), x
        assert x["bytes_out"] > 4, x


def test_a_reload_moves_the_log_and_a_bad_path_refuses_it():
    b = h.EchoBackend()
    first, second = (os.path.join(h.RUNTIME_DIR, f"reload-{n}.log") for n in ("a", "b"))
    conf = os.path.join(h.RUNTIME_DIR, "reload-access.toml")
    with open(conf, "w") as f:
        f.write(f'access-log = "{first}"\n')
    inst = h.Instance([b], workers=1, extra=["--config", conf])
    http_exchange(inst.port, [b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    with open(conf, "w") as f:
        f.write(f'access-log = "{second}"\n')
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    http_exchange(inst.port, [b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    with open(conf, "w") as f:
        f.write('access-log = "/nonexistent-dir/c.log"\n')
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 1 and "access-log" in r.stderr and "refused" in r.stderr, r.stderr
    http_exchange(inst.port, [b"GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    inst.stop()
    assert [x["path"] for x in read_lines(first)] == ["/one"]
    assert [x["path"] for x in read_lines(second)] == ["/two", "/three"]


if __name__ == "__main__":
    h.main(globals())
