"""Issue 13, runtime backend control and the state journal: `wslb backend drain|ready|maint|
weight|list|reset` on a running instance (synchronous, idempotent, text or --json), under a
connect storm with zero failures; the journal across reload, across stop + run, an edited
configuration line winning over an override, and the bad input (an unknown backend, a
malformed state file)."""

import json
import os
import socket
import threading

import harness as h


def backend(inst, address):
    return inst.backend(inst.status(), address)


def ctl(inst, *args):
    return h.cli("backend", *args, "--name", inst.name)


def test_drain_and_weight_under_a_connect_storm_lose_nothing():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], extra=["--mode", "tcp"])
    failures, done = [], []
    threads = [threading.Thread(target=h.echo_storm, args=(inst.port, 300, failures, done))
               for _ in range(4)]
    for t in threads:
        t.start()
    inst.wait_accepted(200, 60)
    r = ctl(inst, "drain", b1.address)
    assert r.returncode == 0 and "ready -> drain" in r.stdout, (r.stdout, r.stderr)
    # Synchronous: once the command has answered, the table says so.
    assert backend(inst, b1.address)["admin_state"] == "drain"
    h.run_async(__import__("asyncio").sleep(0.2))  # connections picked just before the answer
    total_at_drain = backend(inst, b1.address)["total"]
    r = ctl(inst, "weight", b2.address, "7", "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["weight"] == 7 and answer["configured_weight"] == 1, answer
    for t in threads:
        t.join(120)
    assert len(done) == 4 and failures == [], failures[:5]
    s = inst.status()
    assert inst.backend(s, b1.address)["total"] == total_at_drain, "the drained backend got new"
    assert inst.backend(s, b2.address)["weight"] == 7
    totals = [b["total"] for b in s["backends"]]
    h.log(f"storm: {totals} connections per backend, {total_at_drain} to b1 before its drain")
    assert sum(totals) >= 1200 and total_at_drain < sum(totals) - 300, totals
    # Idempotent: asking again changes nothing and says so.
    r = ctl(inst, "drain", b1.address)
    assert r.returncode == 0 and "unchanged (drain)" in r.stdout, r.stdout
    r = ctl(inst, "ready", b1.address)
    assert r.returncode == 0 and "drain -> ready" in r.stdout, r.stdout
    listing = json.loads(ctl(inst, "list", "--json").stdout)
    assert [(b["address"], b["admin_state"], b["weight"]) for b in listing] == \
        [(b1.address, "ready", 1), (b2.address, "ready", 7)], listing


def test_drain_keeps_established_connections_and_maint_pauses_checks():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    inst = h.Instance([b1, b2], extra=["--mode", "tcp", "--check-interval", "100ms"])
    held = [socket.create_connection(("127.0.0.1", inst.port), timeout=10) for _ in range(6)]
    h.wait_until(lambda: backend(inst, b1.address)["active"] == 3, 10, what="3 on b1")
    assert ctl(inst, "drain", b1.address).returncode == 0
    for s in held:  # the established ones still relay, whichever backend holds them
        assert h.echo_through(s, b"still here")[0] == 10
    assert backend(inst, b1.address)["active"] == 3
    assert ctl(inst, "maint", b1.address).returncode == 0
    h.run_async(__import__("asyncio").sleep(0.3))
    before = backend(inst, b1.address)["check"]["last_check_ms_ago"]
    h.run_async(__import__("asyncio").sleep(0.6))
    after = backend(inst, b1.address)["check"]["last_check_ms_ago"]
    assert after >= before + 500, ("health checks of a backend in maint go on", before, after)
    assert ctl(inst, "ready", b1.address).returncode == 0
    h.wait_until(lambda: backend(inst, b1.address)["check"]["last_check_ms_ago"] < 300, 5,
                 what="checks to resume")
    for s in held:
        s.close()


def test_journal_survives_reload_and_stop_and_run_and_an_edited_line_wins():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    config = os.path.join(h.RUNTIME_DIR, "journal.toml")
    h.write_config(config, [b1, b2])
    name = h.unique_name("journal")
    inst = h.Instance([], name=name, extra=["--config", config])
    assert ctl(inst, "drain", b1.address).returncode == 0
    assert ctl(inst, "weight", b2.address, "4").returncode == 0
    state_file = os.path.join(h.RUNTIME_DIR, f"{name}.state")
    assert f"{b1.address},weight=1\tdrain" in open(state_file).read()

    r = h.cli("reload", "--name", name)
    assert r.returncode == 0 and "override dropped" not in r.stdout, r.stdout
    s = inst.status()
    assert inst.backend(s, b1.address)["admin_state"] == "drain"
    assert inst.backend(s, b2.address)["weight"] == 4

    inst.stop()
    inst = h.Instance([], name=name, extra=["--config", config])
    s = inst.status()
    assert inst.backend(s, b1.address)["admin_state"] == "drain", s
    assert inst.backend(s, b2.address)["weight"] == 4, s

    # The operator edits b2's line: the edit wins, the reload says which override it dropped.
    h.write_config(config, [b1, f"{b2.address},weight=2"])
    r = h.cli("reload", "--name", name)
    assert r.returncode == 0, r.stderr
    assert f"runtime override dropped: {b2.address} (its line changed" in r.stdout, r.stdout
    s = inst.status()
    assert inst.backend(s, b2.address)["weight"] == 2
    assert inst.backend(s, b1.address)["admin_state"] == "drain"
    assert b2.address not in open(state_file).read()

    r = ctl(inst, "reset")
    assert r.returncode == 0 and "1 runtime overrides cleared" in r.stdout, r.stdout
    assert inst.backend(inst.status(), b1.address)["admin_state"] == "ready"
    assert h.cli("reload", "--name", name).returncode == 0
    assert inst.backend(inst.status(), b1.address)["admin_state"] == "ready"


def test_bad_input_unknown_backend_and_malformed_state_file():
    b1 = h.EchoBackend()
    state_file = os.path.join(h.RUNTIME_DIR, "broken.state")
    with open(state_file, "w") as f:
        f.write("backend\tthis is\tnot\ta journal\n")
    inst = h.Instance([b1], extra=["--state-file", state_file])
    log = inst.log()
    assert f"state file {state_file} is malformed (line 1:" in log, log
    assert os.path.exists(state_file + ".bad") and not os.path.exists(state_file)
    assert backend(inst, b1.address)["admin_state"] == "ready"

    r = ctl(inst, "drain", "127.0.0.1:1")
    assert r.returncode == 1 and "no backend '127.0.0.1:1'" in r.stderr, r.stderr
    r = ctl(inst, "drain", "127.0.0.1:1", "--json")
    assert r.returncode == 1 and "no backend" in r.stderr
    r = ctl(inst, "weight", b1.address, "0")
    assert r.returncode == 1 and "1 to 1000" in r.stderr, r.stderr
    r = ctl(inst, "fly", b1.address)
    assert r.returncode == 1 and "usage" in r.stderr, r.stderr
    assert h.cli("backend", "--name", inst.name).returncode == 2  # no action: a CLI usage error
    # None of it changed anything; a good command still works and writes a good journal.
    assert ctl(inst, "drain", b1.address).returncode == 0
    assert "\tdrain\t" in open(state_file).read()


if __name__ == "__main__":
    h.main(globals())
