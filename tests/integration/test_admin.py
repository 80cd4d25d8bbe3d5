"""Issue 13, the admin listener: /metrics read by a real Prometheus parser (Debian's
python3-prometheus-client) with the values `wslb status --json` shows, /status, the dashboard
in headless Chromium following the live counts, and the bad requests it must survive
(no token, a huge head, a client that never finishes its head)."""

import json
import os
import socket

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

import admin_client as a
import harness as h

TOKEN = "t0ken-for-tests"


def start_with_admin(backends, extra=(), workers=2):
    port = h.free_port()
    inst = h.Instance(backends, workers=workers,
                      extra=["--mode", "tcp", "--admin", f"127.0.0.1:{port}",
                             "--admin-token", TOKEN, *extra])
    return inst, port


def hold(port, n, payload=b"x" * 100):
    """n raw TCP connections through wslb (tcp mode to echo backends), each echoing `payload`
    once; returns the open sockets."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += s.recv(65536)
        out.append(s)
    return out


def samples(text, parser=text_string_to_metric_families):
    """{(sample name, frozenset of labels): value} of every sample the parser found."""
    out = {}
    for family in parser(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metrics_match_status(port, inst):
    """True when /metrics and `status --json`, read back to back, agree on every value both
    show (retried by the caller: a worker may move between the two reads)."""
    status = inst.status()
    code, _, text = a.get(port, "/metrics", TOKEN)
    assert code == 200
    m = samples(text)
    for b in status["backends"]:
        label = ("backend", b["address"])
        expect = {
            ("wslb_backend_connections", frozenset([label])): b["active"],
            ("wslb_backend_weight", frozenset([label])): b["weight"],
            ("wslb_backend_up", frozenset([label])): 1 if b["healthy"] else 0,
            ("wslb_bytes_total", frozenset([label, ("direction", "in")])): b["bytes_in"],
            ("wslb_bytes_total", frozenset([label, ("direction", "out")])): b["bytes_out"],
            ("wslb_backend_connect_failures_total", frozenset([label])): b["failures"],
        }
        for key, value in expect.items():
            if m.get(key) != value:
                return f"{key}: metrics {m.get(key)} status {value}"
    for w in status["workers"]:
        key = ("wslb_worker_connections", frozenset([("slot", str(w["slot"]))]))
        if m.get(key) != w["connections"]:
            return f"{key}: metrics {m.get(key)} status {w['connections']}"
    return True


def test_metrics_parse_and_match_status_under_load():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst, port = start_with_admin([b1, b2.address + ",weight=2"])
    held = hold(inst.port, 12)
    h.wait_until(lambda: sum(b["active"] for b in inst.status()["backends"]) == 12, 10,
                 what="12 live connections in status")
    h.wait_until(lambda: metrics_match_status(port, inst) is True, 10,
                 what="metrics equal to status")
    code, fields, text = a.get(port, "/metrics", TOKEN)
    assert fields["content-type"].startswith("text/plain; version=0.0.4"), fields
    m = samples(text)
    live = sum(v for (n, _), v in m.items() if n == "wslb_backend_connections")
    assert live == 12, m
    assert m[("wslb_backend_admin_state",
              frozenset([("backend", b1.address), ("state", "ready")]))] == 1
    assert m[("wslb_reloads_total", frozenset([("result", "ok")]))] == 0
    for s in held[:5]:
        s.close()
    h.wait_until(lambda: sum(b["active"] for b in inst.status()["backends"]) == 7, 10,
                 what="7 live connections")
    h.wait_until(lambda: metrics_match_status(port, inst) is True, 10,
                 what="metrics equal to status after closes")

    # OpenMetrics when asked, read by the OpenMetrics parser (strict: it needs the # EOF).
    code, fields, text = a.get(port, "/metrics", TOKEN,
                               headers=["Accept: application/openmetrics-text; version=1.0.0"])
    assert code == 200 and fields["content-type"].startswith("application/openmetrics-text")
    om = samples(text, openmetrics_families)
    assert om[("wslb_backend_connections", frozenset([("backend", b1.address)]))] + \
        om[("wslb_backend_connections", frozenset([("backend", b2.address)]))] == 7
    for s in held[5:]:
        s.close()


def test_histograms_kinds_and_closes_follow_real_websocket_connections():
    import asyncio
    import websockets
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    port = h.free_port()
    inst = h.Instance([b1, b2], extra=["--admin", f"127.0.0.1:{port}"])

    def metrics():
        return samples(a.get(port, "/metrics")[2])

    async def until(predicate, what):
        for _ in range(200):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def scenario():
        conns = [await websockets.connect(inst.url) for _ in range(10)]
        for i, ws in enumerate(conns):
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"
        for ws in conns[:6]:
            await ws.close()
        await until(lambda: sum(b["active"] for b in inst.status()["backends"]) == 4,
                    "4 live connections")
        await until(lambda: metrics()[("wslb_closes_total", frozenset([("cause", "client")]))]
                    == 6, "6 client closes")
        m = metrics()
        assert m[("wslb_handshake_duration_seconds_count", frozenset())] == 10, m
        assert m[("wslb_handshake_duration_seconds_bucket", frozenset([("le", "+Inf")]))] == 10
        assert 0 < m[("wslb_handshake_duration_seconds_sum", frozenset())] < 10 * 10
        assert m[("wslb_backend_connect_duration_seconds_count", frozenset())] == 10
        assert m[("wslb_connection_duration_seconds_count", frozenset())] == 6
        status = inst.status()
        ws_closed = sum(m[("wslb_connections_total", frozenset([("backend", b["address"]),
                                                                 ("kind", "websocket")]))]
                        for b in status["backends"])
        assert ws_closed == 6, m
        # Every connection status counted, once it has ended, is counted by kind.
        assert sum(b["total"] for b in status["backends"]) - \
            sum(b["active"] for b in status["backends"]) == ws_closed
        for ws in conns[6:]:
            await ws.close()
        await until(lambda: metrics()[("wslb_connection_duration_seconds_count", frozenset())]
                    == 10, "10 lifetimes")
    h.run_async(scenario())


def test_status_page_is_the_status_json_contract():
    b = h.EchoBackend()
    inst, port = start_with_admin([b])
    code, fields, body = a.get(port, "/status", TOKEN)
    assert code == 200 and fields["content-type"] == "application/json"
    page, cli = json.loads(body), inst.status()
    for volatile in ("uptime_s",):
        page.pop(volatile), cli.pop(volatile)
    for doc in (page, cli):
        for backend in doc["backends"]:
            backend["check"].pop("last_check_ms_ago")
    assert page == cli, (page, cli)


def test_reloads_are_counted_and_shown_as_events():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    config = os.path.join(h.RUNTIME_DIR, "reload-count.toml")
    h.write_config(config, [b1])
    admin = h.free_port()
    inst = h.Instance([], extra=["--config", config, "--admin", f"127.0.0.1:{admin}"])
    h.write_config(config, [b1, b2])
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, r.stderr
    h.write_config(config, ["127.0.0.1:0"])
    assert h.cli("reload", "--name", inst.name).returncode == 1
    m = samples(a.get(admin, "/metrics")[2])
    assert m[("wslb_reloads_total", frozenset([("result", "ok")]))] == 1, m
    assert m[("wslb_reloads_total", frozenset([("result", "failed")]))] == 1, m

    def events():
        return json.loads(a.get(admin, "/events")[2])
    got = h.wait_until(lambda: [e for e in events() if e["kind"] == "backend_added"], 5,
                       what="backend_added event")
    assert b2.address in got[0]["text"]
    kinds = [e["kind"] for e in events()]
    assert kinds.count("reload") == 2, kinds
    last = events()[-1]["seq"]
    assert json.loads(a.get(admin, f"/events?after={last}")[2]) == []


def test_requests_without_the_token_get_401():
    b = h.EchoBackend()
    inst, port = start_with_admin([b])
    for path in ("/metrics", "/status", "/", "/events"):
        code, fields, _ = a.get(port, path)
        assert code == 401, (path, code)
        assert fields["www-authenticate"].startswith("Bearer"), fields
    assert a.get(port, "/metrics", "wrong-token")[0] == 401
    assert a.get(port, "/metrics", TOKEN + "x")[0] == 401
    assert a.get(port, f"/status?token={TOKEN}")[0] == 200
    assert a.get(port, "/nothing-here", TOKEN)[0] == 404
    answer = a.raw_request(port, b"POST /metrics HTTP/1.1\r\nAuthorization: Bearer " +
                           TOKEN.encode() + b"\r\nContent-Length: 0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 405 "), answer
    assert a.raw_request(port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_huge_and_slow_requests_are_cut_off_and_never_block_the_master():
    b = h.EchoBackend()
    inst, port = start_with_admin([b])
    huge = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * 20000 + b"\r\n\r\n"
    try:
        answer = a.raw_request(port, huge)
    except ConnectionResetError:
        answer = b"(reset)"
    assert answer.startswith(b"HTTP/1.1 431 ") or answer == b"(reset)", answer[:100]
    # Clients that send half a head and stall: the master keeps serving everyone else, and
    # drops the stalled ones at their deadline.
    slow = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /metr")
        slow.append(s)
    assert a.get(port, "/metrics", TOKEN)[0] == 200
    assert h.cli("status", "--name", inst.name).returncode == 0
    for s in slow:
        assert s.recv(100) == b"", "the stalled client was not dropped"
        s.close()
    assert a.get(port, "/metrics", TOKEN)[0] == 200


def test_bad_admin_flags_exit_2():
    b = "127.0.0.1:9001"
    for args, flag in [
        (["--admin", "127.0.0.1:99999"], "--admin"),
        (["--admin", "nowhere"], "--admin"),
        (["--admin-token", "x"], "--admin-token"),
        (["--admin", "127.0.0.1:9100", "--admin-token", "a b"], "--admin-token"),
    ]:
        r = h.cli("run", "--backend", b, "--name", h.unique_name(), *args, timeout=10)
        assert r.returncode == 2 and flag in r.stderr, (args, r.returncode, r.stderr)


def test_admin_port_taken_cannot_start():
    b = h.EchoBackend()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        inst = h.Instance([b], extra=["--admin", f"127.0.0.1:{port}"], wait=False)
        assert inst.proc.wait(15) == 3
        assert "admin listener: cannot listen on" in inst.log(), inst.log()


def test_dashboard_in_chromium_follows_status_while_load_runs():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst, port = start_with_admin([b1, b2])
    code, _, page = a.get(port, "/", TOKEN)
    assert code == 200 and "<canvas" in page
    assert "://" not in page, "the dashboard must not fetch anything from elsewhere"
    browser = a.Browser(f"http://127.0.0.1:{port}/?token={TOKEN}")
    try:
        h.wait_until(lambda: int(browser.evaluate(
            "document.getElementById('updated')?.dataset.polls || 0")) >= 2, 30,
            interval=0.3, what="the dashboard's first polls")

        def page_follows_status():
            status = inst.status()
            want = {b["address"]: b["active"] for b in status["backends"]}
            workers = {str(w["slot"]): w["connections"] for w in status["workers"]}
            shown = browser.evaluate("""(() => {
              const b = {}, w = {};
              for (const r of document.querySelectorAll('#backends tr'))
                b[r.dataset.backend] = Number(r.dataset.active);
              for (const r of document.querySelectorAll('#workers tr'))
                w[r.dataset.slot] = Number(r.dataset.connections);
              return {b, w};
            })()""")
            return (shown["b"] == want and shown["w"] == workers) or (shown, want, workers)

        held = []
        for step in (8, 6):  # load goes up, then up again while the page polls
            held += hold(inst.port, step)
            h.wait_until(lambda: sum(b["active"] for b in inst.status()["backends"]) ==
                         len(held), 10, what=f"{len(held)} live connections")
            h.wait_until(lambda: page_follows_status() is True, 15, interval=0.3,
                         what="the page showing status's numbers")
        for s in held[:10]:
            s.close()
        h.wait_until(lambda: sum(b["active"] for b in inst.status()["backends"]) == 4, 10,
                     what="4 live connections")
        h.wait_until(lambda: page_follows_status() is True, 15, interval=0.3,
                     what="the page showing status's numbers after closes")
        health = browser.evaluate(
            "[...document.querySelectorAll('#backends tr')].map(r => r.dataset.health + '/' + r.dataset.admin)")
        assert health == ["up/ready", "up/ready"], health
        rate = browser.evaluate("document.getElementById('rate-now').textContent")
        assert rate.isdigit(), rate
        events = browser.evaluate("document.getElementById('events').textContent")
        assert "generation 1" in events, events
        shot = browser.screenshot(os.path.join(h.RUNTIME_DIR, "dashboard.png"))
        assert os.path.getsize(shot) > 10000
        h.log(f"dashboard screenshot: {shot}")
        for s in held[10:]:
            s.close()
    finally:
        browser.close()


if __name__ == "__main__":
    h.main(globals())
