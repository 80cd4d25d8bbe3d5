"""Issue 2, the core: relaying through forked workers that share the live count table.
Real `wslb` binary, real `wslb-echo` backends, python3-websockets as the third-party client."""

import asyncio
import hashlib
import os
import signal
import socket
import threading
import time

import websockets

import harness as h


def test_bad_flags_exit_2_and_name_the_flag():
    b = "127.0.0.1:9001"
    cases = [
        (["--listen", "127.0.0.1:8080", "--backend", b, "--bogus"], "--bogus"),
        (["--listen", "not-an-address", "--backend", b], "--listen"),
        (["--listen", "127.0.0.1:70000", "--backend", b], "--listen"),
        (["--listen", "127.0.0.1:8080"], "--backend"),
        (["--listen", "127.0.0.1:8080", "--backend", "127.0.0.1:0"], "--backend"),
        (["--listen", "127.0.0.1:8080", "--backend", b, "--workers", "0"], "--workers"),
        (["--listen", "127.0.0.1:8080", "--backend", b, "--balance", "fastest"], "--balance"),
    ]
    for args, flag in cases:
        r = h.cli("run", *args, timeout=10)
        assert r.returncode == 2, f"{args}: exit {r.returncode}, stderr {r.stderr!r}"
        assert flag in r.stderr, f"{args}: message does not name {flag}: {r.stderr!r}"


def test_status_of_unknown_instance_says_not_running():
    r = h.cli("status", "--name", h.unique_name("absent"))
    assert r.returncode == 1, r
    assert "not running" in r.stderr, r.stderr


async def _open_and_echo(url, n, hold_event, release_event, counts):
    async def one(i):
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(f"hello {i}")
            assert await ws.recv() == f"hello {i}"
            counts["open"] += 1
            if counts["open"] == n:
                hold_event.set()
            await release_event.wait()
            await ws.send(f"bye {i}")
            assert await ws.recv() == f"bye {i}"
    await asyncio.gather(*(one(i) for i in range(n)))


def test_200_connections_split_evenly_and_counts_return_to_zero():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], workers=2)
    seen = {}

    async def scenario():
        hold, release = asyncio.Event(), asyncio.Event()
        counts = {"open": 0}
        task = asyncio.create_task(_open_and_echo(inst.url, 200, hold, release, counts))
        await asyncio.wait_for(hold.wait(), 60)
        s = await asyncio.to_thread(inst.status)
        seen["open"] = s
        release.set()
        await task

    h.run_async(scenario())
    s = seen["open"]
    active = [inst.backend(s, b.address)["active"] for b in (b1, b2)]
    h.log("active per backend while 200 open:", active,
          "per worker:", [w["connections"] for w in s["workers"]])
    assert sum(active) == 200, active
    assert abs(active[0] - active[1]) <= 4, f"split {active} is not 100/100 (+-2)"
    per_worker = [w["connections"] for w in s["workers"] if w["state"] == "running"]
    assert sum(per_worker) == 200, per_worker

    def all_zero():
        s = inst.status()
        return all(b["active"] == 0 for b in s["backends"]) and \
            all(w["connections"] == 0 for w in s["workers"])
    h.wait_until(all_zero, 5, what="active back to 0")
    s = inst.status()
    assert sum(b["total"] for b in s["backends"]) == 200, s["backends"]
    assert all(b["bytes_in"] > 0 and b["bytes_out"] > 0 for b in s["backends"]), s["backends"]
    inst.stop()


def test_kill_9_worker_is_replaced_and_its_counts_vanish():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], workers=2)
    result = {}

    async def scenario():
        release = asyncio.Event()
        conns = []
        for i in range(40):
            ws = await websockets.connect(inst.url)
            await ws.send("x")
            await ws.recv()
            conns.append(ws)
        before = await asyncio.to_thread(inst.status)
        victim = before["workers"][0]
        victim_conns = victim["connections"]
        assert victim_conns > 0, before["workers"]

        failures, early_failures, successes = [], [], [0]
        killed_at = [None]
        stop_churn = asyncio.Event()

        async def churn():
            while not stop_churn.is_set():
                # A connection the victim had already accepted dies with it; what must never
                # fail is a connection started after the kill (the listener stays open).
                started = time.monotonic()
                try:
                    async with websockets.connect(inst.url, open_timeout=5) as ws:
                        await ws.send("c")
                        assert await ws.recv() == "c"
                    successes[0] += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    if killed_at[0] is None or started < killed_at[0]:
                        early_failures.append(repr(e))
                    else:
                        failures.append(repr(e))
                await asyncio.sleep(0.005)

        churners = [asyncio.create_task(churn()) for _ in range(4)]
        await asyncio.sleep(0.3)
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at[0] = time.monotonic()

        def replaced():
            s = inst.status()
            w = [w for w in s["workers"] if w["slot"] == victim["slot"]]
            return s if w and w[0]["pid"] != victim["pid"] and w[0]["state"] == "running" else None
        await asyncio.to_thread(h.wait_until, replaced, 3, 0.01, "replacement worker")
        result["replace_s"] = time.monotonic() - killed_at[0]
        await asyncio.sleep(0.5)
        stop_churn.set()
        await asyncio.gather(*churners)
        after = await asyncio.to_thread(inst.status)
        result.update(before=before, after=after, failures=failures, successes=successes[0],
                      victim_conns=victim_conns, early_failures=early_failures)
        for ws in conns:
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - the victim's connections are gone
                pass
        release.set()

    h.run_async(scenario())
    h.log(f"replacement running after {result['replace_s'] * 1000:.0f} ms; churn "
          f"{result['successes']} ok, {len(result['failures'])} failed after the kill, "
          f"{len(result['early_failures'])} in flight on the victim")
    # How fast is bench/lifecycle_timing's to measure; here, that it happens (within the 3 s wait).
    assert not result["failures"], result["failures"][:5]
    assert result["successes"] > 20
    active_after = sum(b["active"] for b in result["after"]["backends"])
    # 40 were open; the victim's died with it and must not be counted any more.
    assert active_after == 40 - result["victim_conns"], (active_after, result["victim_conns"])
    slot0 = [w for w in result["after"]["workers"] if w["slot"] == 0][0]
    assert slot0["restarts"] >= 1
    inst.stop()


def test_64_mib_each_way_arrives_intact_in_tcp_mode():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1, extra=["--mode", "tcp"])
    data = os.urandom(64 << 20)
    with socket.create_connection(("127.0.0.1", inst.port), timeout=60) as s:
        start = time.monotonic()
        received, digest = h.echo_through(s, data)
        elapsed = time.monotonic() - start
    h.log(f"64 MiB each way in {elapsed:.2f} s")
    assert received == len(data), received
    assert digest == hashlib.sha256(data).hexdigest()
    s = inst.status()
    b = inst.backend(s, b1.address)
    assert b["bytes_in"] == len(data) and b["bytes_out"] == len(data), b
    inst.stop()


def _rss_kib(pid):
    return h.proc_status_value(pid, "VmRSS")


def test_slow_reader_keeps_worker_memory_bounded():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1, extra=["--mode", "tcp"])
    worker = inst.worker_pids()[0]
    baseline = _rss_kib(worker)
    s = socket.create_connection(("127.0.0.1", inst.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    stop = threading.Event()
    sent = [0]

    def writer():
        block = b"y" * 65536
        s.settimeout(0.5)
        while not stop.is_set():
            try:
                sent[0] += s.send(block)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                break
    t = threading.Thread(target=writer)
    t.start()
    peak = baseline
    read = 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        s.settimeout(0.1)
        try:
            read += len(s.recv(4096))  # 4 KiB every 50 ms: ~80 KiB/s, far below the offer
        except socket.timeout:
            pass
        peak = max(peak, _rss_kib(worker))
        time.sleep(0.05)
    stop.set()
    t.join()
    s.close()
    growth = peak - baseline
    h.log(f"slow reader: client offered {sent[0] >> 10} KiB, read {read >> 10} KiB; "
          f"worker RSS {baseline} KiB -> peak {peak} KiB (+{growth} KiB)")
    assert sent[0] > 2 * 1024 * 1024, "the writer should have been able to push some MiB"
    assert growth < 2048, f"worker grew {growth} KiB under a slow reader"
    inst.stop()


def test_second_run_with_same_name_is_refused_and_stale_table_replaced():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1)
    r = h.cli("run", "--name", inst.name, "--listen", f"127.0.0.1:{h.free_port()}",
              "--backend", b1.address, timeout=10)
    assert r.returncode != 0 and "already running" in r.stderr, r
    workers = inst.worker_pids()
    os.kill(inst.proc.pid, signal.SIGKILL)
    inst.proc.wait(5)

    h.wait_until(lambda: all(h.process_gone(p) for p in workers), 1.5,
                 what="orphaned workers to exit")
    r = h.cli("status", "--name", inst.name)
    assert r.returncode == 1 and "not running" in r.stderr, r
    again = h.Instance([b1], workers=1, name=inst.name, listen_port=inst.port)
    assert "stale table" in again.log(), again.log()
    again.stop()


if __name__ == "__main__":
    h.main(globals())
