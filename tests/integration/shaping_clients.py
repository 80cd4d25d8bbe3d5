"""Clients and samplers for the load-shaping tests (maxconn, slow start, rebalancing,
evacuation): python3-websockets clients that hold their connection, or reconnect after a short
random delay when the server closes it as real client libraries do, and a sampler of
`wslb status --json` that keeps every sample, so a test can check that a bound held all along."""

import asyncio
import json
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


class ReconnectingClients:
    """`count` WebSocket clients that behave like client libraries: connect, ask the echo
    backend who it is, stay until the server closes, then reconnect after a short random delay
    (50-500 ms). Records every close with its code and time, every connection's backend, and
    each client's backends in order. `url_for(i)` gives client i's URL (a hash key in its
    query, say); by default every client uses `url`."""

    def __init__(self, url, count, url_for=None):
        self.url_for = url_for or (lambda i: url)
        self.count = count
        self.closes = []            # (monotonic time, client, close code)
        self.placed = {}            # client -> backend id of its current connection
        self.history = {}           # client -> backend ids of its connections, in order
        self.connects = 0
        self._stop = None

    async def _client(self, i):
        while not self._stop.is_set():
            try:
                ws = await websockets.connect(self.url_for(i), open_timeout=20, close_timeout=2,
                                              ping_interval=None)
            except Exception:
                await asyncio.sleep(random.uniform(0.05, 0.5))
                continue
            self.connects += 1
            try:
                await ws.send("whoami")
                ident = json.loads(await ws.recv())["id"]
                self.placed[i] = ident
                self.history.setdefault(i, []).append(ident)
                stop_wait = asyncio.ensure_future(self._stop.wait())
                closed = asyncio.ensure_future(self._close_frame(ws))
                await asyncio.wait([stop_wait, closed], return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                if closed.done():
                    at, code = closed.result()
                    self.closes.append((at, i, code))
                else:
                    closed.cancel()
                    await ws.close()
                    return
            except websockets.exceptions.ConnectionClosed as e:
                self.closes.append((time.monotonic(), i, e.rcvd.code if e.rcvd else 1006))
            finally:
                self.placed.pop(i, None)
            await asyncio.sleep(random.uniform(0.05, 0.5))

    @staticmethod
    async def _close_frame(ws):
        """Waits for the server's close: (monotonic time the close frame arrived, its code, or
        1006 without one). The time is taken as the frame arrives, not when the closing
        handshake ends, which waits on the backend's side too: a test of the pace measures
        when wslb closed, not how busy the other processes were."""
        try:
            while True:
                await ws.recv()  # the echo backend sends nothing unasked
        except websockets.exceptions.ConnectionClosed as e:
            return time.monotonic(), e.rcvd.code if e.rcvd else 1006

    async def run(self, body):
        """Starts the clients (in small batches), runs `body(self)` (a coroutine function) and
        stops them."""
        self._stop = asyncio.Event()
        tasks = []
        for i in range(self.count):
            tasks.append(asyncio.create_task(self._client(i)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        try:
            return await body(self)
        finally:
            self._stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    def by_backend(self):
        counts = {}
        for ident in self.placed.values():
            counts[ident] = counts.get(ident, 0) + 1
        return counts

    async def wait_placed(self, total, timeout):
        """Waits until `total` clients are connected; returns how many are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.placed) < total:
            await asyncio.sleep(0.2)
        return len(self.placed)


async def poll_status(inst):
    return await asyncio.get_running_loop().run_in_executor(None, inst.status)


async def run_cli(*args):
    """`wslb ARGS...` off the event loop (the clients keep running meanwhile)."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: h.cli(*args))


def max_in_window(times, window=1.0):
    """The most events in any `window`-second stretch (a sliding window)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best
