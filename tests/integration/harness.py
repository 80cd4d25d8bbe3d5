"""Shared helpers for the integration tests: start the real `wslb` and `wslb-echo` binaries on
loopback, read `wslb status --json`, and clean up only the processes a test started.

Run with Debian's /usr/bin/python3 (python3-websockets 10.x: asyncio API, `websockets.connect`).
Each test file calls `harness.main(globals())`, which runs every function named `test_*` and
prints a closing line "N passed, M failed".
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import websockets

BUILD_DIR = os.environ.get("WSLB_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
WSLB = os.path.join(BUILD_DIR, "wslb")
ECHO = os.path.join(BUILD_DIR, "demo", "wslb-echo")
LOADGEN = os.path.join(BUILD_DIR, "bench", "wslb-loadgen")
# `wslb run` whose new workers fail at start while the file named by WSLB_FAULT_FOR_TEST says
# so (tests/fault_injection); a test target, not the shipped binary.
WSLB_FAULTY = os.path.join(BUILD_DIR, "tests", "fault_injection", "wslb-faulty")

# One private runtime directory (control sockets, locks) per test process, so tests never touch
# an operator's instances; instance names are unique per process as well.
RUNTIME_DIR = tempfile.mkdtemp(prefix="wslb-test-")
os.environ["WSLB_RUNTIME_DIR"] = RUNTIME_DIR
_started = []  # every Popen we started, killed at exit by PID
_user_dirs = {}  # uid -> runtime directory made by as_user(), removed at exit
_instances = []  # every Instance started: cleanup() removes the table a killed one left
_name_counter = [0]


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Polls `predicate` until it returns a truthy value; raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def unique_name(prefix="t"):
    _name_counter[0] += 1
    return f"{prefix}{os.getpid()}-{_name_counter[0]}"


def start_process(argv, log_path=None, **kwargs):
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if log_path else None,
                         start_new_session=True, **kwargs)
    _started.append(p)
    return p


def as_user(uid):
    """Popen/run keyword arguments that run a process as `uid` (the test runs as root), with
    its own private runtime directory, as that user would have."""
    if uid not in _user_dirs:
        _user_dirs[uid] = tempfile.mkdtemp(prefix=f"wslb-test-uid{uid}-")
        os.chown(_user_dirs[uid], uid, uid)
    runtime = _user_dirs[uid]
    return dict(user=uid, group=uid, extra_groups=[],
                env={**os.environ, "WSLB_RUNTIME_DIR": runtime})


def cli(*args, timeout=30, **kwargs):
    """Runs `wslb ARGS...` and returns the CompletedProcess (text mode). `kwargs` go to
    subprocess.run (as_user(uid), for one)."""
    return subprocess.run([WSLB, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def write_config(path, backends, more=""):
    """Writes a --config file at `path`: the `backend` list (addresses, or objects with an
    `.address`, as Instance takes them), then the TOML text `more`."""
    with open(path, "w") as f:
        f.write("backend = [" + ", ".join(f'"{b if isinstance(b, str) else b.address}"'
                                           for b in backends) + "]\n" + more)


class EchoBackend:
    """A `wslb-echo` process on 127.0.0.1:port (WebSocket echo, HTTP JSON answers, raw echo)."""

    def __init__(self, port=None, ident=None, extra=()):
        self.port = port or free_port()
        self.ident = ident or f"echo-{self.port}"
        self.extra = list(extra)
        self.proc = None
        self.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        ready = os.path.join(RUNTIME_DIR, f"echo-{self.port}.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.proc = start_process([ECHO, "--listen", self.address, "--id", self.ident,
                                   "--ready-file", ready, *self.extra],
                                  log_path=os.path.join(RUNTIME_DIR, f"echo-{self.port}.log"))
        wait_until(lambda: os.path.exists(ready) or self.proc.poll() is not None, 10,
                   what=f"echo backend {self.address}")
        assert self.proc.poll() is None, f"echo backend {self.address} exited"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Instance:
    """A `wslb run` master in the foreground of its own process, with its log in a file."""

    def __init__(self, backends, workers=2, extra=(), name=None, listen_port=None, wait=True,
                 binary=None, run_as=None):
        self.name = name or unique_name()
        self.run_as = run_as or {}  # as_user(uid): the instance and its CLI calls run as uid
        self.port = listen_port or free_port()
        self.log_path = os.path.join(RUNTIME_DIR, f"{self.name}.log")
        self.args = ["run", "--name", self.name, "--listen", f"127.0.0.1:{self.port}",
                     "--workers", str(workers)]
        for b in backends:
            self.args += ["--backend", b if isinstance(b, str) else b.address]
        self.args += list(extra)
        self.workers = workers
        self.proc = start_process([binary or WSLB, *self.args], log_path=self.log_path,
                                  **self.run_as)
        _instances.append(self)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=10):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"wslb exited with {self.proc.returncode}:\n{self.log()}")
            s = self.status()
            # The table must be this master's: a stale one left by a killed predecessor with the
            # same name is replaced only once this master has started.
            return s and s["master_pid"] == self.proc.pid and \
                sum(1 for w in s["workers"] if w["state"] == "running") >= self.workers
        wait_until(ready, timeout, what=f"{self.workers} running workers")

    def status(self):
        """`wslb status --json` as a dict, or None when it is not answering."""
        r = cli("status", "--name", self.name, "--json", **self.run_as)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def backend(self, status, address):
        for b in status["backends"]:
            if b["address"] == address:
                return b
        raise AssertionError(f"backend {address} not in status: {status['backends']}")

    def runtime_dir(self):
        return self.run_as.get("env", {}).get("WSLB_RUNTIME_DIR", RUNTIME_DIR)

    def table_path(self):
        """/dev/shm/<the table's random name>, as the master recorded it in the runtime
        directory, or None while nothing is recorded."""
        try:
            with open(os.path.join(self.runtime_dir(), self.name + ".table")) as f:
                return "/dev/shm/" + f.read().strip()
        except FileNotFoundError:
            return None

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def worker_pids(self, state="running"):
        s = self.status()
        return [w["pid"] for w in s["workers"] if w["state"] == state]

    def wait_accepted(self, total, timeout):
        """Waits until the workers have accepted `total` connections in all."""
        wait_until(lambda: sum(w["accepted"] for w in self.status()["workers"]) >= total,
                   timeout, what=f"{total} connections accepted")

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"


_COUNTERS = {"uptime_s", "connections", "accepted", "restarts", "drain_left_ms",
             "next_attempt_ms", "active", "active_per_worker", "total", "bytes_in", "bytes_out",
             "failures", "transitions", "check", "errors", "queued", "closed", "ramp_pct"}


def without_counters(status):
    """`status --json` with every counter and clock left out: what must stay the same, byte
    for byte, when a refused reload or restart says it changed nothing."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in _COUNTERS}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return json.dumps(strip(status), sort_keys=True)


class Churn:
    """C concurrent clients in a loop: connect, WebSocket handshake, one echo, close."""

    def __init__(self, url, concurrency=8):
        self.url, self.concurrency = url, concurrency
        self.ok = 0
        self.failures = []
        self.stop = asyncio.Event()

    async def _client(self, i):
        n = 0
        while not self.stop.is_set():
            n += 1
            msg = f"{i}-{n}"
            try:
                async with websockets.connect(self.url, open_timeout=5, close_timeout=5) as ws:
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 5)
                    if got != msg:
                        raise AssertionError(f"echo {got!r} != {msg!r}")
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                self.failures.append(f"{type(e).__name__}: {e}")

    async def run(self):
        await asyncio.gather(*(self._client(i) for i in range(self.concurrency)))


def serve_loopback(handle, port=0, backlog=64):
    """Listens on 127.0.0.1:`port` (0: a free one) and hands every connection it accepts to
    `handle(conn)` on a thread of its own, until the returned socket is closed."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    # Closing a socket does not wake a thread blocked in accept() on it (Linux), and the port
    # would go on listening: the loop wakes every 0.2 s and ends once the socket is closed.
    sock.settimeout(0.2)

    def accept_loop():
        while True:
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=accept_loop, daemon=True).start()
    return sock


def connect_storm(port, total):
    """Starts `total` non-blocking connects to 127.0.0.1:`port` at once (faster than a worker
    drains the listener's queue); returns the sockets, for the caller to close."""
    sockets = []
    for _ in range(total):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def echo_storm(port, count, failures, done, payload=b"ping"):
    """Connects to 127.0.0.1:`port`, echoes `payload` and closes, `count` times, one after
    another; appends what went wrong to `failures` and 1 to `done` at the end (run it on a
    thread, several at once, for a connect storm)."""
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                got, _ = echo_through(s, payload, shut_write=True)
                if got != len(payload):
                    failures.append(f"echoed {got} bytes")
        except OSError as e:
            failures.append(repr(e))
    done.append(1)


def copy_with_another_build_id(build_id, name):
    """A copy of the wslb binary (in RUNTIME_DIR, as `name`) whose GNU build id note holds
    other bytes: another build, as far as an instance can tell. Returns (path, its id)."""
    path = os.path.join(RUNTIME_DIR, name)
    with open(WSLB, "rb") as f:
        image = f.read()
    old = bytes.fromhex(build_id)
    assert image.count(old) >= 1, "build id bytes not found in the binary"
    new = bytes(b ^ 0x5A for b in old)
    with open(path, "wb") as f:
        f.write(image.replace(old, new, 1))
    os.chmod(path, 0o700)
    return path, new.hex()


def proc_status_value(pid, field):
    """The number after `field:` in /proc/PID/status (VmRSS in KiB, voluntary_ctxt_switches)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def process_gone(pid):
    """True once `pid` has exited: no longer there, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def record_close(ws, since, closes):
    """Reads `ws` until it closes, then appends (seconds since `since`, its close code) to
    `closes`: when each client saw its close, and with which code."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed:
        closes.append((time.monotonic() - since, ws.close_code))


def echo_through(sock, data, shut_write=False, send=None):
    """Sends `data` on a thread while reading back on this one until as many bytes came back
    (or EOF). Returns (bytes received, sha256 hex of them). With `shut_write` a FIN follows the
    data and reading goes on to EOF. `send`, when given, is the thread's own way of sending
    `data` (e.g. half, then a restart, then the rest)."""
    import hashlib

    def writer():
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
    sender = threading.Thread(target=send or writer)
    sender.start()
    digest, got = hashlib.sha256(), 0
    while shut_write or got < len(data):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        got += len(chunk)
    sender.join()
    return got, digest.hexdigest()


def assert_silent(sock, seconds, what):
    """Fails when `sock` yields any byte or EOF within `seconds`."""
    sock.settimeout(seconds)
    try:
        data = sock.recv(100)
    except socket.timeout:
        return
    raise AssertionError(f"{what}: {data!r}")


def run_async(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def cleanup():
    for p in reversed(_started):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: workers go with it
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    _started.clear()
    # A master killed here (or by the test) leaves its table behind: not for the next test.
    for inst in _instances:
        path = inst.table_path()
        if path and os.path.exists(path):
            os.unlink(path)
    _instances.clear()


def main(namespace):
    """Runs every test_* function of the calling module; exit status 1 if any failed."""
    only = sys.argv[1:]
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        log(f"--- {name}")
        start = time.monotonic()
        try:
            fn()
            passed += 1
            log(f"PASS {name} ({time.monotonic() - start:.1f}s)")
        except Exception:
            failed += 1
            traceback.print_exc()
            log(f"FAIL {name} ({time.monotonic() - start:.1f}s)")
            for path in sorted(os.listdir(RUNTIME_DIR)):
                if path.endswith(".log"):
                    with open(os.path.join(RUNTIME_DIR, path), errors="replace") as f:
                        tail = f.read()[-3000:]
                    print(f"----- {path} (tail)\n{tail}", flush=True)
        finally:
            cleanup()
    for path in _user_dirs.values():
        shutil.rmtree(path, ignore_errors=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
