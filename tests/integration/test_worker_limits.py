"""Worker behaviour at its limits, with the real binary: out of descriptors, idle timeout, and
closing the connections of a backend that goes down (--on-down close)."""

import asyncio
import os
import resource
import socket
import time

import websockets

import harness as h


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _echo_once(sock, payload=b"ping", timeout=2.0):
    sock.settimeout(timeout)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(64)
        if not chunk:
            break
        got += chunk
    return got


def test_out_of_descriptors_pauses_accept_and_resumes():
    b1 = h.EchoBackend()
    limit = 200

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    # The master raises its soft limit to the hard one and tells how many connections fit.
    name = h.unique_name()
    port = h.free_port()
    log_path = os.path.join(h.RUNTIME_DIR, f"{name}.log")
    proc = h.start_process([h.WSLB, "run", "--name", name, "--listen", f"127.0.0.1:{port}",
                            "--backend", b1.address, "--workers", "1", "--mode", "tcp",
                            "--check", "none"], log_path=log_path, preexec_fn=low_fd_limit)
    h.wait_until(lambda: "accepting" in open(log_path).read(), 10, what="worker accepting")
    capacity_line = [l for l in open(log_path) if "each worker can hold" in l][0]
    capacity = int(capacity_line.split("hold about ")[1].split()[0])
    h.log("capacity:", capacity_line.strip())
    assert 50 < capacity < limit // 2, capacity

    served, queued = [], []
    for i in range(capacity + 16):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        (served if i < capacity else queued).append(s)
    for s in served:
        assert _echo_once(s) == b"ping"
    for s in queued:
        s.sendall(b"wait")
    time.sleep(0.5)
    for s in queued:
        h.assert_silent(s, 0.05, "a connection beyond capacity was served")
    log_text = open(log_path).read()
    assert log_text.count("pausing accept") == 1, log_text[-2000:]
    worker_pid = int([l for l in log_text.splitlines() if "worker 0: accepting" in l][0]
                     .split("wslb[")[1].split("]")[0])
    before = _cpu_ticks(worker_pid)
    time.sleep(1.0)
    idle_ticks = _cpu_ticks(worker_pid) - before
    h.log(f"paused at {capacity} connections; worker CPU while paused: {idle_ticks} ticks/s")
    assert idle_ticks <= 5, f"worker is spinning while paused ({idle_ticks} ticks in 1 s)"

    for s in served[:20]:
        s.close()
    for s in queued:
        s.settimeout(3)
        got = b""
        while len(got) < 4:
            got += s.recv(16)
        assert got == b"wait", got
    for s in served[20:] + queued:
        s.close()
    proc.terminate()
    proc.wait(10)


def test_idle_timeout_closes_quiet_tunnels_only():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1, extra=["--idle-timeout", "600ms"])
    out = {}

    async def scenario():
        quiet = await websockets.connect(inst.url)
        busy = await websockets.connect(inst.url)
        start = time.monotonic()
        closed_at = None
        while time.monotonic() - start < 2.0:
            await busy.send("tick")
            assert await busy.recv() == "tick"
            if closed_at is None:
                try:
                    await asyncio.wait_for(quiet.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass
                except websockets.ConnectionClosed:
                    closed_at = time.monotonic() - start
            else:
                await asyncio.sleep(0.2)
        out["quiet_closed_at"] = closed_at
        await busy.send("still")
        out["busy"] = await busy.recv()
        await busy.close()

    h.run_async(scenario())
    h.log(f"idle tunnel closed after {out['quiet_closed_at']}s; busy one still echoes")
    assert out["quiet_closed_at"] is not None and 0.5 <= out["quiet_closed_at"] <= 1.6
    assert out["busy"] == "still"
    inst.stop()


def _on_down_case(policy):
    # The backend answers WebSocket upgrades but 500 to the health check's GET: it starts up
    # (checks prove it down), then goes down while a connection to it is open.
    b1 = h.EchoBackend(extra=["--http-status", "500"])
    inst = h.Instance([b1], workers=1, extra=[
        "--check", "http", "--check-path", "/health", "--check-interval", "300ms",
        "--check-fall", "2", "--check-rise", "2", "--check-timeout", "200ms",
        "--on-down", policy])
    out = {}

    async def scenario():
        ws = await websockets.connect(inst.url)
        await ws.send("hi")
        assert await ws.recv() == "hi"
        h.wait_until(lambda: not inst.status()["backends"][0]["healthy"], 3,
                     what="backend marked down")
        await asyncio.sleep(0.8)
        try:
            await ws.send("after")
            out["echo"] = await asyncio.wait_for(ws.recv(), 1)
        except websockets.ConnectionClosed:
            out["echo"] = None
        out["code"] = ws.close_code
        await ws.close()

    h.run_async(scenario())
    inst.stop()
    return out


def test_on_down_close_sends_1001_and_keep_keeps():
    closed = _on_down_case("close")
    kept = _on_down_case("keep")
    h.log(f"on-down close: code {closed['code']}; on-down keep: echo {kept['echo']!r}")
    assert closed["echo"] is None and closed["code"] == 1001, closed
    assert kept["echo"] == "after", kept


if __name__ == "__main__":
    h.main(globals())
