"""TLS termination: certificates and their errors, status, reload, session-ticket keys; wss://
and https:// through wslb with real clients (python ssl and websockets, openssl s_client,
headless Chromium); bad input on the TLS port; a drain of wss clients."""

import asyncio
import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import websockets

import harness as h
from tls_pki import TestPKI


def _pki():
    return TestPKI(os.path.join(h.RUNTIME_DIR, f"pki-{h.unique_name()}"))


def _tls_flags(*pairs):
    flags = []
    for cert, key in pairs:
        flags += ["--tls-cert", cert, "--tls-key", key]
    return flags


def _write_config(path, backend, pairs):
    with open(path, "w") as f:
        f.write(f'backend = ["{backend}"]\n')
        f.write("tls-cert = [" + ", ".join(f'"{c}"' for c, _ in pairs) + "]\n")
        f.write("tls-key = [" + ", ".join(f'"{k}"' for _, k in pairs) + "]\n")


def test_a_bad_certificate_or_key_exits_2_naming_the_flag_and_the_file():
    pki = _pki()
    good = pki.issue("good", ["good.test"])
    other = pki.issue("other", ["other.test"], kind="rsa")
    expired = pki.expired("old.test")
    missing = os.path.join(pki.dir, "missing.pem")
    unreadable = pki.issue("unreadable", ["u.test"])
    os.chmod(unreadable[1], 0)
    cases = [
        ([missing, good[1]], f"--tls-cert: cannot read '{missing}': No such file or directory"),
        ([good[0], missing], f"--tls-key: cannot read '{missing}': No such file or directory"),
        ([good[0], other[1]],
         f"--tls-key: '{other[1]}' does not match the certificate in '{good[0]}'"),
        ([expired[0], expired[1]], f"--tls-cert: '{expired[0]}' expired on 2020-01-02 00:00 UTC"),
        ([good[1], good[1]], f"--tls-cert: '{good[1]}' holds no PEM certificate"),
    ]
    if os.geteuid() != 0:  # root reads any file
        cases.append(([unreadable[0], unreadable[1]],
                      f"--tls-key: cannot read '{unreadable[1]}': Permission denied"))
    for (cert, key), message in cases:
        r = h.cli("run", "--name", h.unique_name(), "--listen", f"127.0.0.1:{h.free_port()}",
                  "--backend", "127.0.0.1:9", "--tls-cert", cert, "--tls-key", key, timeout=20)
        assert r.returncode == 2, (message, r.returncode, r.stderr)
        assert r.stderr.strip() == f"wslb run: {message}", (message, r.stderr)
    r = h.cli("run", "--name", h.unique_name(), "--backend", "127.0.0.1:9",
              "--tls-cert", good[0], timeout=20)
    assert r.returncode == 2 and "--tls-key: 1 --tls-cert but 0 --tls-key" in r.stderr, r.stderr


def test_status_shows_each_certificate_and_a_bad_reload_changes_nothing():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    beta = pki.issue("beta", ["beta.test", "*.beta.test"], kind="rsa", days=5)
    gamma = pki.issue("gamma", ["gamma.test"])
    backend = h.EchoBackend()
    cfg = os.path.join(pki.dir, "wslb.toml")
    _write_config(cfg, backend.address, [alpha, beta])
    inst = h.Instance([], workers=1, extra=["--config", cfg])
    s = inst.status()
    certs = s["tls"]["certificates"]
    assert [c["subject"] for c in certs] == ["CN=alpha.test", "CN=beta.test"], certs
    assert [c["key"] for c in certs] == ["ECDSA prime256v1", "RSA 2048"], certs
    assert certs[0]["days_left"] in (29, 30) and not certs[0]["expiring"], certs
    assert certs[1]["days_left"] in (4, 5) and certs[1]["expiring"], certs
    assert s["tls"]["ticket_keys"] == 1, s["tls"]
    text = h.cli("status", "--name", inst.name).stdout
    assert "TLS CERTIFICATES" in text and "CN=beta.test  RSA 2048" in text and "RENEW SOON" in text, text
    h.wait_until(lambda: "warning: certificate CN=beta.test" in inst.log(), 5, what="expiry warning")
    assert "warning: certificate CN=alpha.test" not in inst.log()

    before = h.without_counters(inst.status())
    _write_config(cfg, backend.address, [alpha, (gamma[0], beta[1])])  # gamma with beta's key
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert ("reload refused, configuration unchanged: --tls-key: "
            f"'{beta[1]}' does not match the certificate in '{gamma[0]}'") in r.stderr, r.stderr
    assert h.without_counters(inst.status()) == before

    _write_config(cfg, backend.address, [gamma, alpha])
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, (r.stdout, r.stderr)
    s = inst.status()
    assert [c["subject"] for c in s["tls"]["certificates"]] == ["CN=gamma.test", "CN=alpha.test"]
    assert s["tls"]["ticket_keys"] == 1, "a reload keeps the instance's ticket keys"
    inst.stop()


def test_ticket_keys_rotate_on_schedule_and_a_plain_instance_has_none():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1,
                      extra=[*_tls_flags(alpha), "--tls-ticket-rotation", "2s"])
    h.wait_until(lambda: inst.status()["tls"]["ticket_keys"] == 2, 15, what="a rotation")
    # The current key keeps being replaced: its age drops back, again and again (with the
    # default rotation of an hour it would not within the wait; how soon it drops is the
    # machine's load).
    ages = [inst.status()["tls"]["ticket_key_age_s"]]

    def dropped_back(times):
        ages.append(inst.status()["tls"]["ticket_key_age_s"])
        return sum(1 for a, b in zip(ages, ages[1:]) if b < a) >= times
    h.wait_until(lambda: dropped_back(3), 30, 0.2, "three rotations seen")
    assert inst.status()["tls"]["ticket_keys"] == 2  # the current key and the one before
    inst.stop()
    plain = h.Instance([backend], workers=1)
    assert plain.status()["tls"] is None
    plain.stop()


def _client_context(pki):
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    return ctx


async def echo_text_and_binary(ws, sizes):
    """Each size once as text (two-byte characters) and once as binary, each echoed back."""
    for n in sizes:
        text = "é" * (n // 2) + "x" * (n % 2)
        await ws.send(text)
        assert await ws.recv() == text, n
        data = os.urandom(n)
        await ws.send(data)
        assert await ws.recv() == data, n


def _peer_cn(ws):
    cert = ws.transport.get_extra_info("ssl_object").getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


def test_wss_echo_1_byte_to_1_mib_by_sni_text_and_binary_then_a_clean_close():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    beta = pki.issue("beta", ["beta.test", "*.beta.test"], kind="rsa")
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=2, extra=_tls_flags(alpha, beta))
    ctx = _client_context(pki)
    sizes = [1, 125, 126, 65535, 65536, 1 << 20]

    # A name no certificate has gets the default one: checked, but not for that name.
    unnamed = _client_context(pki)
    unnamed.check_hostname = False

    async def one(sni):
        async with websockets.connect(f"wss://127.0.0.1:{inst.port}/",
                                      ssl=unnamed if sni == "other.test" else ctx,
                                      server_hostname=sni, max_size=4 << 20) as ws:
            tls_obj = ws.transport.get_extra_info("ssl_object")
            await echo_text_and_binary(ws, sizes)
            cn = _peer_cn(ws)
            version = tls_obj.version()
            alpn = tls_obj.selected_alpn_protocol()
        assert ws.close_code == 1000, ws.close_code
        return cn, version, alpn

    async def scenario():
        return await asyncio.gather(one("alpha.test"), one("beta.test"), one("www.beta.test"),
                                    one("other.test"))
    results = h.run_async(scenario(), timeout=120)
    assert [r[0] for r in results] == ["alpha.test", "beta.test", "beta.test", "alpha.test"], results
    assert all(r[1] == "TLSv1.3" for r in results), results
    s = inst.status()
    assert s["tls"]["handshakes"] >= 4 and s["tls"]["failed"] == 0, s["tls"]
    inst.stop()


def test_https_forwarding_headers_say_https_and_proxy_headers_the_client():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=_tls_flags(alpha))
    ctx = _client_context(pki)
    conn = http.client.HTTPSConnection("127.0.0.1", inst.port, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", inst.port)),
                                server_hostname="alpha.test")
    conn.request("GET", "/hello", headers={"X-Forwarded-Proto": "http"})  # spoofed: dropped
    answer = json.loads(conn.getresponse().read())
    conn.close()
    headers = {k.lower(): v for k, v in answer["headers"].items()}
    assert headers["x-forwarded-proto"] == "https", headers
    assert "proto=https" in headers["forwarded"], headers
    inst.stop()

    proxied = h.EchoBackend(extra=["--proxy-protocol"])
    inst = h.Instance([proxied], workers=1, extra=[*_tls_flags(alpha), "--mode", "tcp",
                                                   "--proxy-protocol", "v2"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", inst.port)),
                         server_hostname="alpha.test") as tls_sock:
        local = tls_sock.getsockname()
        assert tls_sock.selected_alpn_protocol() is None  # tcp mode: the bytes are not HTTP
        tls_sock.sendall(b"GET /proxy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        body = b""
        while True:
            chunk = tls_sock.recv(65536)
            if not chunk:
                break
            body += chunk
    info = json.loads(body.split(b"\r\n\r\n", 1)[1])
    assert info["proxy"]["src"] == f"{local[0]}:{local[1]}", info
    inst.stop()


def _s_client(port, sni, *extra):
    """Runs `openssl s_client`, its input held open half a second: a TLS 1.3 server sends its
    session tickets after the handshake, and -sess_out saves only what arrived."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                          "-servername", sni, *extra],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    out, err = p.communicate(b"", timeout=30)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_s_client_sni_and_a_session_resumes_across_restart_workers_and_reload():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    beta = pki.issue("beta", ["beta.test"], kind="rsa")
    backend = h.EchoBackend()
    cfg = os.path.join(pki.dir, "wslb.toml")
    _write_config(cfg, backend.address, [alpha, beta])
    inst = h.Instance([], workers=2, extra=["--config", cfg])
    for sni, subject in [("alpha.test", "CN = alpha.test"), ("beta.test", "CN = beta.test"),
                         ("nobody.test", "CN = alpha.test")]:
        r = _s_client(inst.port, sni, "-CAfile", pki.ca_cert, "-verify_return_error")
        out = r.stdout.decode()
        assert f"subject={subject}" in out, out[-2000:]
        assert "Verify return code: 0 (ok)" in out, out[-2000:]
    session = os.path.join(pki.dir, "session.pem")
    for label in ["first", "same generation", "after restart-workers", "after reload"]:
        if label == "after restart-workers":
            assert h.cli("restart-workers", "--name", inst.name).returncode == 0
        if label == "after reload":
            assert h.cli("reload", "--name", inst.name).returncode == 0
        extra = ["-sess_out", session] if label == "first" else ["-sess_in", session]
        r = _s_client(inst.port, "beta.test", "-CAfile", pki.ca_cert, "-tls1_3", *extra)
        out = r.stdout.decode()
        if label == "first":
            assert "New, TLSv1.3" in out, out[-2000:]
        else:
            assert "Reused, TLSv1.3" in out, (label, out[-2000:])
    s = inst.status()
    assert s["generation"] == 3 and s["tls"]["resumed"] >= 3, s
    inst.stop()


def test_bad_input_on_the_tls_port_and_the_worker_goes_on():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1,
                      extra=[*_tls_flags(alpha), "--handshake-timeout", "1s"])
    pid = inst.worker_pids()[0]
    # Plain HTTP to the TLS port: a short plain answer, then the close.
    with socket.create_connection(("127.0.0.1", inst.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
    # Garbage instead of a ClientHello: closed.
    with socket.create_connection(("127.0.0.1", inst.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(300))
        assert sock.recv(4096) == b""  # no answer, no alert: the close
    # A handshake that stalls after half a ClientHello: closed at the handshake timeout.
    ctx = _client_context(pki)
    hello = _client_hello(pki)
    abandoned = inst.status()["tls"]["abandoned"]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", inst.port), timeout=30) as sock:
        sock.sendall(hello[: len(hello) // 2])
        assert sock.recv(4096) == b""
    # Not before the timeout, and counted as the one abandoned handshake (how long after it
    # the close came is the machine's load, not wslb's).
    assert time.monotonic() - started > 0.7, time.monotonic() - started
    assert inst.status()["tls"]["abandoned"] == abandoned + 1, inst.status()["tls"]
    # A client that vanishes mid-handshake.
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", inst.port))
        sock.sendall(hello)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, the server's flight unread
    # The same worker serves on.
    async def echo():
        async with websockets.connect(f"wss://127.0.0.1:{inst.port}/", ssl=ctx,
                                      server_hostname="alpha.test") as ws:
            await ws.send("still here")
            return await ws.recv()
    assert h.run_async(echo(), timeout=20) == "still here"
    assert inst.worker_pids() == [pid]
    def counted():
        t = inst.status()["tls"]
        return t["failed"] >= 2 and t["abandoned"] >= 2
    h.wait_until(counted, 5, what="failed and abandoned handshakes counted")
    assert inst.status()["errors"]["400_bad_request"] >= 1
    inst.stop()


def test_a_drain_sends_wss_clients_1001_inside_tls_then_close_notify():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1,
                      extra=[*_tls_flags(alpha), "--drain-timeout", "1s"])
    ctx = _client_context(pki)

    async def scenario():
        clients = []
        for _ in range(5):
            ws = await websockets.connect(f"wss://127.0.0.1:{inst.port}/", ssl=ctx,
                                          server_hostname="alpha.test")
            await ws.send("hi")
            assert await ws.recv() == "hi"
            clients.append(ws)
        r = await asyncio.to_thread(h.cli, "restart-workers", "--name", inst.name)
        assert r.returncode == 0, r.stderr
        codes = []
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), 10)
            codes.append(ws.close_code)
        return codes
    codes = h.run_async(scenario(), timeout=60)
    assert codes == [1001] * 5, codes
    inst.stop()


def _strict_context(pki):
    """A client context that tells a clean end (close_notify: recv gives b"") from a
    truncation (a FIN alone raises SSLEOFError, and OpenSSL no longer offers the session)."""
    ctx = _client_context(pki)
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # python sets it by default
    return ctx


def _raw_wss(port, ctx, session=None):
    """A WebSocket upgraded by hand over TLS (`ctx`: a _strict_context)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls_sock = ctx.wrap_socket(raw, server_hostname="alpha.test", suppress_ragged_eofs=False,
                               session=session)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    tls_sock.sendall(("GET / HTTP/1.1\r\nHost: alpha.test\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                      "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += tls_sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return tls_sock


def test_the_raw_close_of_a_drained_wss_connection_is_close_notify_then_fin():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1,
                      extra=[*_tls_flags(alpha), "--drain-timeout", "1s"])
    tls_sock = _raw_wss(inst.port, _strict_context(pki))
    assert h.cli("restart-workers", "--name", inst.name).returncode == 0
    frame = tls_sock.recv(4096)
    assert frame[:4] == b"\x88\x02\x03\xe9", frame  # close 1001, unmasked, inside TLS
    # Then close_notify: the TLS layer reports a clean end, not a truncation.
    assert tls_sock.recv(4096) == b""
    tls_sock.close()
    inst.stop()


def test_a_websocket_its_backend_closes_ends_with_close_notify_and_its_session_resumes():
    # The client closes, the backend answers the close and ends the TCP connection: wslb ends
    # the client's side at once, close_notify first. Without it OpenSSL (and python) take the
    # connection for truncated and the client's saved session is no longer offered.
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    inst = h.Instance([backend], workers=1, extra=_tls_flags(alpha))
    ctx = _strict_context(pki)
    session = None
    for attempt in range(3):
        tls_sock = _raw_wss(inst.port, ctx, session)
        assert tls_sock.session_reused == (attempt > 0), attempt
        tls_sock.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # close 1000, masked (zero key)
        frame = b""
        while len(frame) < 4:
            frame += tls_sock.recv(4096)
        assert frame[:4] == b"\x88\x02\x03\xe8", frame
        assert tls_sock.recv(4096) == b""  # close_notify, not an SSLEOFError
        session = tls_sock.session
        tls_sock.close()
    assert inst.status()["tls"]["resumed"] == 2, inst.status()["tls"]
    inst.stop()


def _client_hello(pki):
    """A real ClientHello for alpha.test, as bytes to send by hand."""
    incoming, out_bio = ssl.MemoryBIO(), ssl.MemoryBIO()
    hello_obj = _client_context(pki).wrap_bio(incoming, out_bio, server_hostname="alpha.test")
    try:
        hello_obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out_bio.read()


def _server_answered(sock, within_s):
    """True when `sock` got bytes (a ServerHello) within `within_s` seconds."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except socket.timeout:
        return False
    finally:
        sock.settimeout(10)


def test_a_handshake_storm_waits_at_the_cap_while_established_wss_connections_are_served():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    backend = h.EchoBackend()
    cap = 4
    inst = h.Instance([backend], workers=1, extra=[*_tls_flags(alpha), "--tls-max-handshakes",
                                                   str(cap), "--handshake-timeout", "30s"])
    ctx = _client_context(pki)
    established, storm_s = 20, 4
    hello = _client_hello(pki)

    # The cap holds: with `cap` handshakes stalled in progress, the next ClientHello waits in the
    # accept queue unanswered; a stalled client that goes frees a place and it is answered.
    stalled = [socket.create_connection(("127.0.0.1", inst.port)) for _ in range(cap)]
    for sock in stalled:
        sock.sendall(hello[: len(hello) // 2])
    h.wait_until(lambda: sum(w["connections"] for w in inst.status()["workers"]) >= cap, 10,
                 what="stalled handshakes accepted")
    waiting = socket.create_connection(("127.0.0.1", inst.port))
    waiting.sendall(hello)
    assert not _server_answered(waiting, 1.5), "a handshake beyond the cap was answered"
    stalled.pop().close()
    assert _server_answered(waiting, 10), "the waiting handshake was not taken up"
    waiting.close()
    for sock in stalled:
        sock.close()

    async def echoer(i, stop):
        rounds = 0
        async with websockets.connect(f"wss://127.0.0.1:{inst.port}/", ssl=ctx,
                                      server_hostname="alpha.test") as ws:
            while not stop.is_set() or rounds == 0:
                msg = f"{i}:{rounds}"
                await ws.send(msg)
                assert await asyncio.wait_for(ws.recv(), 30) == msg
                rounds += 1
                await asyncio.sleep(0.05)
        return rounds, ws.close_code

    async def storm():
        return await asyncio.create_subprocess_exec(
            h.LOADGEN, "--mode", "churn", "--target", f"127.0.0.1:{inst.port}", "--tls",
            "--sni", "alpha.test", "-c", "200", "-d", str(storm_s), "--processes", "2",
            "--max-pending", "200", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)

    async def scenario():
        stop = asyncio.Event()
        clients = [asyncio.create_task(echoer(i, stop)) for i in range(established)]
        await asyncio.sleep(0.5)  # every echoer established before the storm
        before = await asyncio.to_thread(inst.status)
        gen = await storm()
        out, _ = await asyncio.wait_for(gen.communicate(), storm_s + 60)
        stop.set()
        return await asyncio.gather(*clients), json.loads(out.decode().splitlines()[0]), before

    results, storm_result, before = h.run_async(scenario(), timeout=180)
    assert [code for _, code in results] == [1000] * established, results
    assert all(rounds > 0 for rounds, _ in results), results
    assert storm_result["cycles"] > cap, storm_result
    after = inst.status()["tls"]
    assert after["handshakes"] - before["tls"]["handshakes"] >= storm_result["cycles"], after
    assert after["failed"] == 0, after
    inst.stop()


_PAGE = """<!doctype html><title>wait</title><script>
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("from chromium");
ws.onmessage = (e) => { document.title = "echo:" + e.data; ws.close(1000); };
ws.onerror = () => { document.title = "error"; };
</script>"""

_PAGE_BACKEND = """
import asyncio, http, sys, websockets
PAGE = sys.argv[2].encode()
async def process_request(path, headers):
    if path == "/page":
        return http.HTTPStatus.OK, [("Content-Type", "text/html")], PAGE
async def echo(ws, path):
    async for m in ws:
        print("message", m, flush=True)
        await ws.send(m)
    print("closed", ws.close_code, flush=True)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), process_request=process_request):
        await asyncio.Future()
asyncio.run(main())
"""


def test_headless_chromium_loads_a_page_over_https_and_opens_wss_from_it():
    pki = _pki()
    alpha = pki.issue("alpha", ["alpha.test"])
    port = h.free_port()
    page_backend = h.start_process(["/usr/bin/python3", "-c", _PAGE_BACKEND, str(port), _PAGE],
                                   log_path=os.path.join(h.RUNTIME_DIR, "page-backend.log"))
    h.wait_until(lambda: _port_open(port), 10, what="page backend")
    inst = h.Instance([f"127.0.0.1:{port}"], workers=1, extra=_tls_flags(alpha))
    home = os.path.join(pki.dir, "home")
    nssdb = os.path.join(home, ".pki", "nssdb")
    os.makedirs(nssdb)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "wslb-test-ca",
                    "-i", pki.ca_cert], check=True)
    # The page opens wss:// when it loads; when the echo comes back it closes with 1000. So
    # the backend seeing "from chromium" and then that close is the whole round trip.
    page_log = os.path.join(h.RUNTIME_DIR, "page-backend.log")
    browser = h.start_process(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                               f"--user-data-dir={os.path.join(home, 'profile')}",
                               "--host-resolver-rules=MAP alpha.test 127.0.0.1",
                               f"https://alpha.test:{inst.port}/page"],
                              log_path=os.path.join(h.RUNTIME_DIR, "chromium.log"),
                              env=dict(os.environ, HOME=home))
    h.wait_until(lambda: "closed 1000" in open(page_log).read(), 60,
                 what="the page's WebSocket round trip")
    assert "message from chromium" in open(page_log).read()
    browser.kill()
    s = inst.status()
    assert s["tls"]["handshakes"] >= 1 and s["tls"]["failed"] == 0, s["tls"]
    inst.stop()
    page_backend.kill()


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    h.main(globals())
