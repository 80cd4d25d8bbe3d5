"""Issue 11, points 1-3: a reload (and a restart) happens whole or not at all. A reload refused
part-way (no free backend row, a key that does not match its certificate after a row was
staged, new workers exiting with 78 or crashing at start) leaves `status`
as it was, byte for byte apart from counters, keeps held connections alive and new ones served
without a single failure, and the reply names the cause. Real binary (and wslb-faulty, the test
build whose workers fail at start on demand), loopback, python3-websockets as the client."""

import asyncio
import os

import websockets

import harness as h
from tls_pki import TestPKI


async def _held(url, n):
    conns = [await websockets.connect(url) for _ in range(n)]
    for i, ws in enumerate(conns):
        await ws.send(f"hello {i}")
        assert await ws.recv() == f"hello {i}"
    return conns


async def _still_alive(conns):
    for i, ws in enumerate(conns):
        await ws.send(f"still {i}")
        assert await ws.recv() == f"still {i}"


def _refused_across_a_storm(inst, command):
    """Runs `wslb COMMAND` while 10 connections are held and a churn of new ones runs; returns
    (the CLI's result, the churn) after checking the held ones still talk."""
    async def scenario():
        held = await _held(inst.url, 10)
        churn = h.Churn(inst.url, concurrency=6)
        task = asyncio.create_task(churn.run())
        await asyncio.sleep(0.3)
        r = await asyncio.to_thread(h.cli, command, "--name", inst.name)
        await asyncio.sleep(0.5)
        churn.stop.set()
        await task
        await _still_alive(held)
        for ws in held:
            await ws.close()
        return r, churn
    return h.run_async(scenario(), timeout=60)


def test_a_reload_with_no_free_backend_row_changes_nothing():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    cfg = os.path.join(h.RUNTIME_DIR, "rows.toml")
    h.write_config(cfg, [b1.address, b2.address])
    inst = h.Instance([], workers=2, extra=["--config", cfg])
    before = h.without_counters(inst.status())
    # 63 new backends, while the 2 old ones keep their rows until a reload commits: 62 are free.
    h.write_config(cfg, [f"127.0.0.1:{20000 + i}" for i in range(63)])
    r, churn = _refused_across_a_storm(inst, "reload")
    h.log(f"across the refused reload: {churn.ok} connections ok, {len(churn.failures)} failed")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "reload refused, configuration unchanged: no free backend row" in r.stderr, r.stderr
    assert not churn.failures, churn.failures[:5]
    assert churn.ok > 0
    assert h.without_counters(inst.status()) == before
    # The same file with room to spare goes through: nothing was left half-done.
    h.write_config(cfg, [b2.address] + [f"127.0.0.1:{20000 + i}" for i in range(3)])
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, (r.stdout, r.stderr)
    s = inst.status()
    assert s["generation"] == 2
    assert sorted(b["address"] for b in s["backends"] if b["state"] == "active") == \
        sorted([b2.address] + [f"127.0.0.1:{20000 + i}" for i in range(3)])
    inst.stop()


def test_a_reload_refused_by_its_certificate_after_staging_a_backend_row_leaves_no_row():
    """The backend rows are prepared before the certificates: a reload that adds a backend (a
    row staged for it) and names a key that does not match its certificate is refused, and the
    staged row goes with it (status as before, no `staged` row); fixed, the same reload goes
    through and the backend takes a row."""
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    pki = TestPKI(os.path.join(h.RUNTIME_DIR, f"pki-{h.unique_name()}"))
    alpha, beta = pki.issue("alpha", ["alpha.test"]), pki.issue("beta", ["beta.test"])
    cfg = os.path.join(h.RUNTIME_DIR, f"staged-{os.getpid()}.toml")

    def write(backends, cert, key):
        h.write_config(cfg, backends, f'tls-cert = ["{cert}"]\ntls-key = ["{key}"]\n')
    write([b1], *alpha)
    inst = h.Instance([], workers=1, extra=["--config", cfg])
    before = h.without_counters(inst.status())
    write([b1, b2], alpha[0], beta[1])
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 1 and "does not match the certificate" in r.stderr, r.stderr
    s = inst.status()
    assert [b["address"] for b in s["backends"]] == [b1.address], s["backends"]
    assert h.without_counters(s) == before
    write([b1, b2], *alpha)
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0 and "+" + b2.address in r.stdout, (r.stdout, r.stderr)
    s = inst.status()
    assert sorted((b["address"], b["state"]) for b in s["backends"]) == \
        sorted([(b1.address, "active"), (b2.address, "active")]), s["backends"]
    inst.stop()


def test_new_workers_that_exit_78_or_crash_at_start_are_refused_and_the_old_ones_serve_on():
    b1, b2 = h.EchoBackend(ident="one"), h.EchoBackend(ident="two")
    cfg = os.path.join(h.RUNTIME_DIR, "faulty.toml")
    h.write_config(cfg, [b1.address])
    fault = os.path.join(h.RUNTIME_DIR, "start-fault")
    os.environ["WSLB_FAULT_FOR_TEST"] = fault
    try:
        inst = h.Instance([], workers=2, extra=["--config", cfg], binary=h.WSLB_FAULTY)
        before = h.without_counters(inst.status())
        h.write_config(cfg, [b1.address, b2.address])
        for what, command, cause in [
            ("worker-fatal-config", "reload", "exit code 78 (fatal configuration)"),
            ("worker-crash", "reload", "killed by signal Aborted"),
            ("worker-fatal-config", "restart-workers", "exit code 78 (fatal configuration)"),
        ]:
            with open(fault, "w") as f:
                f.write(what + "\n")
            r, churn = _refused_across_a_storm(inst, command)
            assert r.returncode == 1, (what, r.stdout, r.stderr)
            assert "generation 2 cannot start: worker" in r.stderr, r.stderr
            assert cause in r.stderr and "generation 1 keeps serving" in r.stderr, r.stderr
            if command == "reload":
                assert "reload refused, configuration unchanged: " in r.stderr, r.stderr
            assert not churn.failures, (what, churn.failures[:5])
            assert h.without_counters(inst.status()) == before, what
        # The cause gone, the same reload goes through with the new backend.
        os.unlink(fault)
        r = h.cli("reload", "--name", inst.name)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "+" + b2.address in r.stdout, r.stdout
        s = inst.status()
        assert s["generation"] == 2 and {b["address"] for b in s["backends"]} >= {b2.address}
        inst.stop()
    finally:
        os.environ.pop("WSLB_FAULT_FOR_TEST", None)


def test_new_workers_that_never_get_ready_are_killed_at_the_timeout_and_nothing_changes():
    b1 = h.EchoBackend()
    fault = os.path.join(h.RUNTIME_DIR, "hang-fault")
    os.environ["WSLB_FAULT_FOR_TEST"] = fault
    try:
        inst = h.Instance([b1], workers=2, binary=h.WSLB_FAULTY)
        before = h.without_counters(inst.status())
        with open(fault, "w") as f:
            f.write("worker-hang\n")
        r, churn = _refused_across_a_storm(inst, "restart-workers")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "generation 2 did not start within 10 s; generation 1 keeps serving" in r.stderr, \
            r.stderr
        assert not churn.failures, churn.failures[:5]
        assert h.without_counters(inst.status()) == before
        # The cause gone, the next restart goes through.
        os.unlink(fault)
        r = h.cli("restart-workers", "--name", inst.name)
        assert r.returncode == 0, (r.stdout, r.stderr)
        s = inst.status()
        assert s["generation"] == 2, s
        assert sum(1 for w in s["workers"] if w["generation"] == 2 and w["state"] == "running") \
            == 2, s["workers"]
        inst.stop()
    finally:
        os.environ.pop("WSLB_FAULT_FOR_TEST", None)


if __name__ == "__main__":
    h.main(globals())
