"""Issue 15, load shaping: maxconn with a bounded queue across several workers, slow start,
paced evacuation and rebalancing of long-lived connections. Real `wslb`, real `wslb-echo`
backends, python3-websockets clients (the reconnecting ones behave like client libraries do:
reconnect after a short random delay when the server closes)."""

import asyncio
import random
import threading
import time

import websockets

import harness as h


class Sampler:
    """Samples `wslb status --json` in a thread until stopped; keeps every sample with its
    time, so a test can check a bound held all along, not only at the end."""

    def __init__(self, inst, interval=0.05):
        self.inst = inst
        self.interval = interval
        self.samples = []  # (monotonic time, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            s = self.inst.status()
            if s:
                self.samples.append((time.monotonic(), s))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self.samples


def active_of(status, address):
    for b in status["backends"]:
        if b["address"] == address:
            return b["active"]
    return 0


async def try_connect(url, results, holders, hold_until):
    """Opens a WebSocket; records ("open", t) or ("status", code, retry_after, t) and keeps an
    open one until `hold_until` (an asyncio.Event) is set."""
    t0 = time.monotonic()
    try:
        ws = await websockets.connect(url, open_timeout=30, close_timeout=1, ping_interval=None)
    except websockets.exceptions.InvalidStatusCode as e:
        results.append(("status", e.status_code, e.headers.get("Retry-After"),
                        time.monotonic() - t0))
        return
    results.append(("open", None, None, time.monotonic() - t0))
    holders.append(ws)
    await hold_until.wait()
    await ws.close()


def test_maxconn_storm_across_workers_queue_then_503():
    """maxconn 30 on two backends, four workers, a storm of 80 at once: never more than 30 on
    either backend (sampled all along), 60 open, 20 wait out the 2 s queue timeout and get 503
    with Retry-After, counted as 503_queue_timeout."""
    a, b = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([f"{a.address},maxconn=30", f"{b.address},maxconn=30"], workers=4,
                      extra=["--queue-timeout", "2s"])
    sampler = Sampler(inst)
    results, holders = [], []

    async def storm():
        hold = asyncio.Event()
        tasks = [asyncio.create_task(try_connect(inst.url, results, holders, hold))
                 for _ in range(80)]
        await asyncio.sleep(0)
        # Wait until every attempt has its outcome, then let the open ones go.
        deadline = time.monotonic() + 30
        while len(results) < 80 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        s = inst.status()
        hold.set()
        await asyncio.gather(*tasks)
        return s

    try:
        during = h.run_async(storm(), timeout=60)
    finally:
        samples = sampler.stop()
    opened = [r for r in results if r[0] == "open"]
    refused = [r for r in results if r[0] == "status"]
    assert len(opened) == 60, results
    assert len(refused) == 20, results
    for _, code, retry_after, waited in refused:
        assert code == 503, refused
        assert retry_after == "2", refused
        assert waited >= 1.9, f"answered before the queue timeout: {waited:.2f} s"
    assert during["errors"]["503_queue_timeout"] == 20, during["errors"]
    assert len(samples) > 10, "status was not sampled"
    peak_a = max(active_of(s, a.address) for _, s in samples)
    peak_b = max(active_of(s, b.address) for _, s in samples)
    h.log(f"maxconn storm: peaks {peak_a}/{peak_b} over {len(samples)} samples, "
          f"{len(opened)} open, {len(refused)} x 503")
    assert peak_a <= 30 and peak_b <= 30, (peak_a, peak_b)
    assert inst.backend(during, a.address)["maxconn"] == 30
    busy_workers = [w for w in during["workers"] if w["accepted"] > 0]
    assert len(busy_workers) >= 2, f"the storm reached one worker only: {during['workers']}"
    inst.stop()


def test_maxconn_queued_clients_get_in_as_others_close():
    """maxconn 10 on one backend, two workers: 10 open, 6 more wait in the queue; as 6 of the
    first close, the 6 waiting get in well before their 5 s queue timeout, and nothing is
    answered 503."""
    a = h.EchoBackend()
    inst = h.Instance([f"{a.address},maxconn=10"], workers=2, extra=["--queue-timeout", "5s"])
    results, holders = [], []

    async def scenario():
        hold_first, hold_rest = asyncio.Event(), asyncio.Event()
        first = [asyncio.create_task(try_connect(inst.url, results, holders, hold_first))
                 for _ in range(10)]
        while len(results) < 10:
            await asyncio.sleep(0.05)
        late_results = []
        late = [asyncio.create_task(try_connect(inst.url, late_results, [], hold_rest))
                for _ in range(6)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s = inst.status()
            if s and s["queued"] == 6:
                break
            await asyncio.sleep(0.05)
        assert inst.status()["queued"] == 6, inst.status()
        assert late_results == [], late_results
        closed_at = time.monotonic()
        for ws in holders[:6]:
            await ws.close()
        while len(late_results) < 6 and time.monotonic() < closed_at + 10:
            await asyncio.sleep(0.02)
        got_in = time.monotonic() - closed_at
        hold_first.set()
        hold_rest.set()
        await asyncio.gather(*first, *late)
        return late_results, got_in

    late_results, got_in = h.run_async(scenario(), timeout=60)
    assert [r[0] for r in late_results] == ["open"] * 6, late_results
    h.log(f"queued clients got in {got_in:.2f} s after places freed")
    assert got_in < 4, got_in
    s = inst.status()
    assert s["errors"]["503_queue_timeout"] == 0, s["errors"]
    inst.stop()


def test_maxconn_tcp_mode_closes_after_queue_timeout():
    """tcp mode: a client over maxconn waits, then is closed (no answer), counted."""
    import socket
    a = h.EchoBackend()
    inst = h.Instance([f"{a.address},maxconn=1"], workers=1,
                      extra=["--mode", "tcp", "--queue-timeout", "1s"])
    first = socket.create_connection(("127.0.0.1", inst.port), timeout=5)
    h.echo_through(first, b"hello")
    second = socket.create_connection(("127.0.0.1", inst.port), timeout=5)
    second.settimeout(5)
    t0 = time.monotonic()
    data = second.recv(100)
    waited = time.monotonic() - t0
    assert data == b"", data
    assert waited >= 0.9, waited
    assert inst.status()["errors"]["tcp_queue_timeout_close"] == 1
    first.close()
    second.close()
    inst.stop()


def test_bad_backend_options_exit_2_naming_them():
    for text, words in [("127.0.0.1:9,maxconn=0", "maxconn=0"),
                        ("127.0.0.1:9,slowstart=soon", "slowstart=soon"),
                        ("127.0.0.1:9,maxconn=5,maxconn=6", "repeats maxconn")]:
        r = h.cli("run", "--name", h.unique_name(), "--listen", f"127.0.0.1:{h.free_port()}",
                  "--backend", text)
        assert r.returncode == 2, (text, r)
        assert "--backend" in r.stderr and words in r.stderr, (text, r.stderr)
    for flag, value in [("--queue-timeout", "forever"), ("--rebalance", "sometimes"),
                        ("--rebalance-rate", "200%"), ("--rebalance-close-code", "99")]:
        r = h.cli("run", "--name", h.unique_name(), "--listen", f"127.0.0.1:{h.free_port()}",
                  "--backend", "127.0.0.1:9", flag, value)
        assert r.returncode == 2, (flag, r)
        assert flag in r.stderr and value in r.stderr, (flag, r.stderr)


if __name__ == "__main__":
    h.main(globals())
