"""Issue 4, health checks: active tcp/http/websocket checks from the one checker process, passive
marking by workers, and what clients see. Real `wslb` binary, `wslb-echo` backends, and
python3-websockets as the client."""

import asyncio
import collections
import json
import os
import signal
import time

import websockets

import harness as h

INTERVAL, TIMEOUT, RISE, FALL = 0.3, 0.2, 2, 2
CHECK_FLAGS = ["--check-interval", "300ms", "--check-rise", str(RISE), "--check-fall", str(FALL),
               "--check-timeout", "200ms"]
# Status is read by running the CLI every 20 ms or so; allow for that and a loaded machine.
SLACK = 0.6


def _backend(inst, address):
    s = inst.status()
    return inst.backend(s, address) if s else None


def _wait_health(inst, address, healthy, timeout):
    """Waits until `address` shows `healthy`; returns (seconds waited, its status entry)."""
    start = time.monotonic()
    entry = h.wait_until(
        lambda: (lambda b: b if b and b["healthy"] is healthy else None)(_backend(inst, address)),
        timeout, interval=0.01, what=f"{address} healthy={healthy}")
    return time.monotonic() - start, entry


def _wait_checked(inst, address, streak_at_least=1, timeout=5):
    return h.wait_until(
        lambda: (lambda b: b if b and b["check"]["streak"] >= streak_at_least else None)(
            _backend(inst, address)),
        timeout, what=f"{address} checked with streak >= {streak_at_least}")


async def _ids_of_held_connections(url, n):
    """Opens n WebSocket connections at once, asks each backend who it is, then closes them all.
    Held together, they spread over every backend the workers may choose."""
    conns = []
    try:
        for _ in range(n):
            conns.append(await websockets.connect(url, open_timeout=5))
        ids = []
        for ws in conns:
            await ws.send("whoami")
            ids.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["id"])
        return ids
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


def _count(ids):
    return dict(collections.Counter(ids))


def _two_backends_then_kill_b2(check="tcp"):
    """Two checked backends behind an instance; b2 is killed and shown down. Returns
    (b1, b2, inst, seconds until down, b2's status entry)."""
    b1 = h.EchoBackend(ident="b1")
    b2 = h.EchoBackend(ident="b2")
    inst = h.Instance([b1, b2], workers=2, extra=["--check", check, *CHECK_FLAGS])
    for b in (b1, b2):
        _wait_checked(inst, b.address)
    b2.kill()
    took, entry = _wait_health(inst, b2.address, False, FALL * INTERVAL + TIMEOUT + SLACK)
    return b1, b2, inst, took, entry


def test_tcp_check_kill_and_restart_a_backend():
    b1, b2, inst, took, entry = _two_backends_then_kill_b2()
    h.log(f"killed backend marked down after {took * 1000:.0f} ms "
          f"(bound fall x interval + timeout = {(FALL * INTERVAL + TIMEOUT) * 1000:.0f} ms)")
    assert entry["check"]["last_result"] == "failed", entry
    assert entry["check"]["last_error"] == "connect refused", entry
    assert entry["check"]["streak"] <= -FALL, entry
    assert entry["check"]["last_check_ms_ago"] is not None
    assert entry["check"]["last_check_ms_ago"] < 1000, entry
    assert _backend(inst, b1.address)["healthy"] is True

    ids = h.run_async(_ids_of_held_connections(inst.url, 40))
    h.log("with b2 down:", _count(ids))
    assert ids.count("b1") == 40, _count(ids)
    # Nothing was even tried on b2: no connect failures counted against it.
    assert _backend(inst, b2.address)["failures"] == 0

    b2.start()  # same port
    took, entry = _wait_health(inst, b2.address, True, RISE * INTERVAL + TIMEOUT + SLACK)
    h.log(f"restarted backend up again after {took * 1000:.0f} ms "
          f"(rise x interval = {RISE * INTERVAL * 1000:.0f} ms)")
    assert entry["check"]["last_result"] == "ok", entry
    assert entry["check"]["streak"] >= RISE, entry
    assert entry["transitions"] == 2, entry

    ids = h.run_async(_ids_of_held_connections(inst.url, 40))
    h.log("with b2 back:", _count(ids))
    assert ids.count("b2") >= 10, _count(ids)

    log = inst.log()
    down = f"checker: backend {b2.address} up -> down after {FALL} failed checks: connect refused"
    up = f"checker: backend {b2.address} down -> up after {RISE} good checks"
    assert log.count(down) == 1, log
    assert log.count(up) == 1, log
    inst.stop()


def _black_hole_case(kind):
    good = h.EchoBackend(ident="good")
    hole = h.EchoBackend(ident="hole", extra=["--black-hole"])
    sick = h.EchoBackend(ident="sick", extra=["--http-status", "500"])
    start = time.monotonic()
    inst = h.Instance([good, hole, sick], workers=1,
                      extra=["--check", kind, "--check-path", "/health", *CHECK_FLAGS])
    # From the start: the first probe within one interval, then fall - 1 more intervals, and the
    # last one times out.
    bound = INTERVAL + (FALL - 1) * INTERVAL + TIMEOUT + SLACK + 0.5  # + start-up of the instance
    _, entry = _wait_health(inst, hole.address, False, bound)
    h.log(f"{kind}: black hole down {(time.monotonic() - start) * 1000:.0f} ms after start")
    assert entry["check"]["last_error"].startswith(f"timeout after {int(TIMEOUT * 1000)} ms"), entry
    good_entry = _wait_checked(inst, good.address, streak_at_least=FALL + 1)
    assert good_entry["healthy"] is True, good_entry
    assert good_entry["check"]["last_error"] == "", good_entry
    return inst, sick


def test_black_hole_is_marked_down_by_http_check():
    inst, sick = _black_hole_case("http")
    _, entry = _wait_health(inst, sick.address, False, 3)
    assert entry["check"]["last_error"] == "HTTP 500", entry
    inst.stop()


def test_black_hole_is_marked_down_by_websocket_check():
    inst, sick = _black_hole_case("websocket")
    # Its plain HTTP answers are 500, but it upgrades WebSocket requests: healthy here.
    entry = _wait_checked(inst, sick.address, streak_at_least=FALL + 1)
    assert entry["healthy"] is True, entry
    inst.stop()


class _FakeUpgradeServer:
    """A thread answering every request head with a fixed response: a backend that is no
    WebSocket server (200 to an upgrade) or a broken one (101 with a wrong accept key)."""

    def __init__(self, response):
        self.response = response.encode()
        self.sock = h.serve_loopback(self._one)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]

    def _one(self, conn):
        with conn:
            conn.settimeout(1)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.response)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def test_websocket_check_needs_101_and_the_right_accept():
    not_ws = _FakeUpgradeServer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close"
                                "\r\n\r\nok")
    bad_accept = _FakeUpgradeServer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                                    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    good = h.EchoBackend(ident="good")
    try:
        inst = h.Instance([good.address, not_ws.address, bad_accept.address], workers=1,
                          extra=["--check", "websocket", "--check-path", "/ws", *CHECK_FLAGS])
        _, entry = _wait_health(inst, not_ws.address, False, 5)
        assert entry["check"]["last_error"] == "no 101 for upgrade (HTTP 200)", entry
        _, entry = _wait_health(inst, bad_accept.address, False, 5)
        assert entry["check"]["last_error"] == "bad Sec-WebSocket-Accept", entry
        entry = _wait_checked(inst, good.address, streak_at_least=FALL + 1)
        assert entry["healthy"] is True, entry
        inst.stop()
        # The same plain HTTP server passes an http check.
        inst = h.Instance([not_ws.address], workers=1,
                          extra=["--check", "http", "--check-path", "/ws", *CHECK_FLAGS])
        entry = _wait_checked(inst, not_ws.address, streak_at_least=FALL + 1)
        assert entry["healthy"] is True, entry
        inst.stop()
    finally:
        not_ws.close()
        bad_accept.close()


def test_all_backends_down_websocket_client_gets_503():
    b1, b2 = h.EchoBackend(ident="b1"), h.EchoBackend(ident="b2")
    inst = h.Instance([b1, b2], workers=2, extra=["--check", "tcp", *CHECK_FLAGS])
    for b in (b1, b2):
        _wait_checked(inst, b.address)
    b1.kill()
    b2.kill()
    for b in (b1, b2):
        _wait_health(inst, b.address, False, FALL * INTERVAL + TIMEOUT + SLACK)
    before = inst.status()["errors"]["503_no_backend"]

    async def attempt():
        try:
            async with websockets.connect(inst.url, open_timeout=5):
                return None
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code

    codes = [h.run_async(attempt()) for _ in range(3)]
    assert codes == [503, 503, 503], codes
    after = inst.status()["errors"]["503_no_backend"]
    assert after - before == 3, (before, after)
    inst.stop()


def test_passive_marking_before_the_next_interval():
    b1 = h.EchoBackend(ident="b1")
    b2 = h.EchoBackend(ident="b2")
    inst = h.Instance([b1, b2], workers=2,
                      extra=["--check", "tcp", "--check-interval", "30s", "--check-rise", "2",
                             "--check-fall", "2", "--check-timeout", "1s"])
    b2.kill()
    killed = time.monotonic()

    async def clients(n):
        ids = []
        for _ in range(n):
            try:
                async with websockets.connect(inst.url, open_timeout=5) as ws:
                    await ws.send("whoami")
                    ids.append(json.loads(await ws.recv())["id"])
            except Exception as e:  # noqa: BLE001 - a failed client is a finding, kept
                ids.append(repr(e))
        return ids

    ids = h.run_async(clients(20))
    entry = _backend(inst, b2.address)
    took = time.monotonic() - killed
    h.log(f"passive mark after {took * 1000:.0f} ms; clients saw {_count(ids)}; b2: {entry}")
    assert entry["healthy"] is False, entry
    assert took < 10, "marked down by real traffic, long before the next 30 s check"
    assert entry["check"]["last_error"].startswith("passive:"), entry
    assert entry["transitions"] == 1, entry
    # The checker had not yet found it: its first probe of b2 is not due before ~15 s.
    assert entry["check"]["last_result"] in ("none", "ok"), entry
    # Every client was served (by b1, after failover for the few that hit b2 first).
    assert ids.count("b1") == 20, _count(ids)
    failures = entry["failures"]
    ids = h.run_async(clients(20))
    assert ids.count("b1") == 20, _count(ids)
    assert _backend(inst, b2.address)["failures"] == failures, "a down backend was tried again"
    assert f"backend {b2.address}" in inst.log()
    inst.stop()


def test_health_survives_restart_workers_and_a_killed_checker():
    b1, b2, inst, _, _ = _two_backends_then_kill_b2()

    r = h.cli("restart-workers", "--name", inst.name)
    assert r.returncode == 0, r
    inst.wait_ready()
    s = inst.status()
    entry = inst.backend(s, b2.address)
    assert entry["healthy"] is False and entry["transitions"] == 1, entry
    ids = h.run_async(_ids_of_held_connections(inst.url, 10))
    assert ids.count("b1") == 10, _count(ids)

    checker_pid = s["checker"]["pid"]
    assert checker_pid > 0, s["checker"]
    os.kill(checker_pid, signal.SIGKILL)
    s = h.wait_until(lambda: (lambda st: st if st and st["checker"]["pid"] not in (0, checker_pid)
                              else None)(inst.status()), 10, what="a new checker")
    h.log("checker restarted:", s["checker"])
    assert s["checker"]["restarts"] >= 1, s["checker"]
    # The new checker resumes from the table: b2 stays down without a new transition, its
    # failure streak keeps growing, and b2's return is still noticed.
    streak = inst.backend(s, b2.address)["check"]["streak"]
    h.wait_until(lambda: _backend(inst, b2.address)["check"]["streak"] < streak, 3,
                 what="the new checker probing b2")
    entry = _backend(inst, b2.address)
    assert entry["healthy"] is False and entry["transitions"] == 1, entry
    b2.start()
    _wait_health(inst, b2.address, True, RISE * INTERVAL + TIMEOUT + SLACK + 1)
    assert inst.log().count(f"checker: backend {b2.address} up -> down") == 1
    inst.stop()


def _write_config(path, backends, interval):
    h.write_config(path, backends,
                   f'check = "tcp"\ncheck-interval = "{interval}"\ncheck-timeout = "200ms"\n'
                   f'check-rise = "{RISE}"\ncheck-fall = "{FALL}"\n')


def test_health_and_checker_survive_a_reload_with_new_settings():
    b1, b2, b3 = (h.EchoBackend(ident=i) for i in ("b1", "b2", "b3"))
    cfg = os.path.join(h.RUNTIME_DIR, "health-reload.toml")
    _write_config(cfg, [b1, b2], "300ms")
    inst = h.Instance([], workers=2, extra=["--config", cfg])
    for b in (b1, b2):
        _wait_checked(inst, b.address)
    b2.kill()
    _wait_health(inst, b2.address, False, FALL * INTERVAL + TIMEOUT + SLACK)
    checker_pid = inst.status()["checker"]["pid"]

    _write_config(cfg, [b1, b2, b3], "200ms")
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, (r.stdout, r.stderr)
    s = inst.status()
    entry = inst.backend(s, b2.address)
    # Health is not forgotten because workers changed, and the checker was not restarted.
    assert entry["healthy"] is False and entry["transitions"] == 1, entry
    assert s["checker"]["pid"] == checker_pid, s["checker"]
    assert s["checker"]["interval_ms"] == 200, s["checker"]
    h.wait_until(lambda: "tcp checks every 200 ms" in inst.log(), 3, what="new settings applied")
    _wait_checked(inst, b3.address)  # the added backend is checked (and started up)
    inst.wait_ready()
    ids = h.run_async(_ids_of_held_connections(inst.url, 20))
    assert ids.count("b2") == 0 and ids.count("b3") > 0, _count(ids)
    b2.start()
    took, _ = _wait_health(inst, b2.address, True, RISE * 0.2 + TIMEOUT + SLACK)
    h.log(f"b2 up {took * 1000:.0f} ms after its restart with a 200 ms interval")
    assert inst.status()["checker"]["pid"] == checker_pid
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
