"""Issue 14, in-place binary upgrade: `wslb upgrade` re-executes the binary keeping the
listener, lock, control socket and table; the old workers hand their tunnels to the new
master's workers; a binary that fails leaves the old instance serving. Real binary, real
clients (python3-websockets), loopback."""

import asyncio
import os
import signal
import ssl
import stat

import websockets

import harness as h
from test_handover import _open_all
from tls_pki import TestPKI


def _running(cmdline):
    """True while a process with exactly this /proc cmdline runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == cmdline:
                    return True
        except OSError:
            pass
    return False


def _upgrade(inst, binary=None):
    args = ["upgrade", "--name", inst.name] + (["--binary", binary] if binary else [])
    return h.cli(*args, timeout=60)


def test_upgrade_to_another_build_keeps_every_connection():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], workers=2, extra=["--drain-timeout", "60s"])
    first = inst.status()
    assert first["build_id"] not in ("", "unknown"), first["build_id"]
    other, other_id = h.copy_with_another_build_id(first["build_id"], "wslb-other-build")
    report = {}

    async def scenario():
        active = await _open_all(inst.url, 100, "e", pause=0.1)
        tasks = [asyncio.create_task(c.run()) for c in active]
        async with websockets.connect(inst.url) as third_party:
            for binary, build in ((other, other_id), (h.WSLB, first["build_id"])):
                before = await asyncio.to_thread(inst.status)
                churn = h.Churn(inst.url, concurrency=6)
                storm = asyncio.create_task(churn.run())
                r = await asyncio.to_thread(_upgrade, inst, binary)
                assert r.returncode == 0, (r.stdout, r.stderr)
                assert "upgraded" in r.stdout, r.stdout
                after = await asyncio.to_thread(inst.status)
                assert after["master_pid"] != before["master_pid"], after
                assert after["build_id"] == build, (after["build_id"], build)
                assert after["generation"] == before["generation"] + 1
                await asyncio.to_thread(
                    h.wait_until, lambda: h.process_gone(before["master_pid"]), 60, 0.1,
                    "the old master to hand over and exit")
                churn.stop.set()
                await storm
                assert not churn.failures, churn.failures[:5]
                s = await asyncio.to_thread(
                    h.wait_until,
                    lambda: (lambda s: s if sum(w["connections"] for w in s["workers"]) == 101
                             else None)(inst.status()), 20, 0.1, "101 connections counted")
                assert all(w["build_id"] == build for w in s["workers"]), s["workers"]
                assert s["handover_lost"] == 0, s
                await third_party.send(f"after {build[:8]}")
                assert await third_party.recv() == f"after {build[:8]}"
                report.setdefault("storms", []).append(churn.ok)
                await asyncio.sleep(1)  # the echoing goes on between the upgrades too
        for c in active:
            c.stop.set()
        await asyncio.gather(*tasks)
        report["failures"] = [f for c in active for f in c.failures]
        report["messages"] = sum(c.sent for c in active)

    h.run_async(scenario(), timeout=300)
    h.log(f"two upgrades: {report['messages']} messages on 100 echoing connections, "
          f"storm connections {report.get('storms')}")
    assert not report["failures"], report["failures"][:5]
    assert inst.proc.wait(5) == 0, "the first master did not exit cleanly"
    r = h.cli("stop", "--name", inst.name)
    assert r.returncode == 0, r


def test_a_new_master_killed_after_taking_over_leaves_the_old_one_serving():
    """kill -9 of the new master right after `upgrade` answered, while the old master's worker
    still drains a wss connection (TLS connections drain instead of moving, 60 s here): the old
    master takes the instance back instead of leaving nobody on the listener. A new
    generation of its own answers new clients, the held connection still echoes, `status`
    names it as the master, and `wslb reload` and `wslb stop` reach it."""
    pki = TestPKI(os.path.join(h.RUNTIME_DIR, f"pki-{h.unique_name()}"))
    cert, key = pki.issue("alpha", ["alpha.test"])
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1, extra=["--tls-cert", cert, "--tls-key", key,
                                               "--drain-timeout", "60s"])
    ctx = ssl.create_default_context(cafile=pki.ca_cert)
    url = f"wss://127.0.0.1:{inst.port}/"
    old = inst.status()["master_pid"]

    def served_by_old_master():
        s = inst.status()
        return s and s["master_pid"] == old and any(
            w["state"] == "running" and w["generation"] == s["generation"] for w in s["workers"])

    async def scenario():
        async with websockets.connect(url, ssl=ctx, server_hostname="alpha.test") as held:
            await held.send("before")
            assert await held.recv() == "before"
            r = await asyncio.to_thread(_upgrade, inst)
            assert r.returncode == 0 and "upgraded" in r.stdout, (r.stdout, r.stderr)
            new = (await asyncio.to_thread(inst.status))["master_pid"]
            assert new != old
            os.kill(new, signal.SIGKILL)
            await asyncio.to_thread(h.wait_until, served_by_old_master, 20, 0.1,
                                    "the old master serving again")
            async with websockets.connect(url, ssl=ctx, server_hostname="alpha.test",
                                          open_timeout=10) as fresh:
                await fresh.send("after")
                assert await fresh.recv() == "after"
            await held.send("still")
            assert await held.recv() == "still"
            r = await asyncio.to_thread(h.cli, "reload", "--name", inst.name)
            assert r.returncode == 0, (r.stdout, r.stderr)

    h.run_async(scenario(), timeout=120)
    assert "this master serves the instance again" in inst.log()
    assert not h.process_gone(old)
    inst.stop()
    assert inst.proc.returncode == 0


def _upgrade_that_fails(script, name):
    """An instance serving a WebSocket client and a connect storm while `upgrade` runs a shell
    script of that name as the new binary. Returns (instance, status before, upgrade result,
    storm), once the client has been answered after it."""
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=2)
    path = os.path.join(h.RUNTIME_DIR, name)
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, stat.S_IRWXU)
    before = inst.status()

    async def scenario():
        async with websockets.connect(inst.url) as ws:
            churn = h.Churn(inst.url, concurrency=6)
            storm = asyncio.create_task(churn.run())
            r = await asyncio.to_thread(_upgrade, inst, path)
            await asyncio.sleep(0.5)
            churn.stop.set()
            await storm
            await ws.send("still here")
            assert await ws.recv() == "still here"
            return r, churn

    r, churn = h.run_async(scenario(), timeout=120)
    h.log(f"{name}: exit {r.returncode}, {r.stderr.strip()!r}; storm {churn.ok} ok")
    assert r.returncode == 1, r
    assert "upgrade failed" in r.stderr, r.stderr
    assert not churn.failures, churn.failures[:5]
    after = inst.status()
    assert after["master_pid"] == before["master_pid"] == inst.proc.pid
    assert after["generation"] == before["generation"]
    assert h.without_counters(after) == h.without_counters(before)
    return inst, r


def test_a_binary_that_exits_at_start_rolls_back_and_the_old_instance_serves_on():
    inst, r = _upgrade_that_fails("#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n",
                                  "wslb-broken")
    assert "exited before it was ready" in r.stderr, r.stderr
    assert "this build is broken" in r.stderr, "the binary's own message is not quoted"
    # Still upgradable and stoppable as before.
    r = _upgrade(inst, "relative/path")
    assert r.returncode == 2 and "relative/path" in r.stderr, r
    inst.stop()
    assert inst.proc.returncode == 0


def test_a_binary_never_ready_is_killed_at_the_timeout_and_the_old_instance_serves_on():
    inst, r = _upgrade_that_fails(
        "#!/bin/sh\necho 'waiting for something that never comes' >&2\n"
        f"exec sleep 631.{os.getpid()}\n",
        "wslb-hangs")
    assert "not ready within 30 s" in r.stderr, r.stderr
    assert "waiting for something that never comes" in r.stderr, r.stderr
    # Killed: nothing runs what the hanging binary became any more.
    # (its argument names this test process: another run of this test on the machine has its own)
    hanging = f"sleep\x00631.{os.getpid()}\x00".encode()
    h.wait_until(lambda: not _running(hanging), 10, 0.1, "the hanging binary killed")
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
