"""Issue 15, how rebalancing is driven: `--rebalance manual` waits for `wslb rebalance`, whose
`--dry-run` prints the plan (per backend current, target, surplus, pace and expected time) and
changes nothing; `off` refuses; with a hash balance only the clients whose key now maps to
another backend are shed; `auto` starts a plan after a backend comes back up (once its slow
start is over) and after a weight change, and not again by itself (no oscillation). Real
`wslb`, real `wslb-echo` backends, python3-websockets clients that reconnect when closed."""

import asyncio
import json
import os
import re
import time

import websockets
from prometheus_client.parser import text_string_to_metric_families

import admin_client
import harness as h
from shaping_clients import ReconnectingClients, Sampler, poll_status, run_cli


def parse_plan(text):
    """`wslb rebalance [--dry-run]` output: {address: (current, target, surplus, rate, expected
    seconds)} and the numbers of the total line (connections, to move, expected seconds)."""
    rows, total = {}, None
    for line in text.splitlines():
        m = re.match(r"(\S+:\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)s$", line.strip())
        if m:
            rows[m[1]] = (int(m[2]), int(m[3]), int(m[4]), float(m[5]), float(m[6]))
        m = re.match(r"total (\d+) connections, (\d+) to move, expected ([\d.]+) s", line)
        if m:
            total = (int(m[1]), int(m[2]), float(m[3]))
    return rows, total


async def wait_plan_end(inst, timeout):
    """Polls status until no plan runs; returns the last status."""
    deadline = time.monotonic() + timeout
    s = await poll_status(inst)
    while time.monotonic() < deadline and s["rebalance"]["running"]:
        await asyncio.sleep(0.2)
        s = await poll_status(inst)
    assert not s["rebalance"]["running"], s["rebalance"]
    return s


async def metrics(port):
    """{(sample name, frozenset of labels): value} of /metrics, read by Prometheus' parser."""
    status, _, body = await asyncio.get_running_loop().run_in_executor(
        None, lambda: admin_client.get(port, "/metrics"))
    assert status == 200, (status, body)
    return {(x.name, frozenset(x.labels.items())): x.value
            for family in text_string_to_metric_families(body) for x in family.samples}


def rebalance_closes(status):
    return sum(b["closed"]["rebalance"] for b in status["backends"])


def manual_instance(tag, extra=()):
    """Echo backends A, B and C, and an instance on A and B (--rebalance manual, minimum age
    1 s, rate 10 %) whose --config file a reload rewrites to add C: (a, b, c, conf, inst)."""
    a, b, c = (h.EchoBackend(ident=x) for x in "ABC")
    conf = os.path.join(h.RUNTIME_DIR, f"{tag}-{os.getpid()}.toml")
    h.write_config(conf, [a, b])
    inst = h.Instance([], workers=2,
                      extra=["--config", conf, "--rebalance", "manual", "--rebalance-min-age", "1s",
                             "--rebalance-rate", "10%", "--drain-timeout", "10m", *extra])
    return a, b, c, conf, inst


async def place_then_add_c(clients, total, timeout, inst, conf, backends):
    """Once `total` clients are placed and older than the minimum age, reloads `conf` rewritten
    with `backends`; returns the reload's result."""
    assert await clients.wait_placed(total, timeout) == total
    await asyncio.sleep(1.5)
    h.write_config(conf, backends)
    r = await run_cli("reload", "--name", inst.name)
    assert r.returncode == 0, r
    return r


def test_manual_waits_for_rebalance_and_dry_run_prints_the_plan():
    """150 clients on A and B, a reload adds C with --rebalance manual: nothing is shed by
    itself; `--dry-run` prints each backend's current count (as status has it), target 50,
    surplus and expected time (surplus / pace) and changes nothing; `wslb rebalance` starts that
    plan, which evens the load with 1012 closes, at most 1.2 x the surplus; /metrics shows the
    plan running with each backend's target and surplus, then its closes by cause."""
    admin = h.free_port()
    a, b, c, conf, inst = manual_instance("manual", ["--admin", f"127.0.0.1:{admin}"])
    total = 150

    async def body(clients):
        await place_then_add_c(clients, total, 60, inst, conf, [a, b, c])
        await asyncio.sleep(3)
        s = await poll_status(inst)
        assert s["rebalance"]["mode"] == "manual" and s["rebalance"]["plans"] == 0, s["rebalance"]
        assert rebalance_closes(s) == 0 and clients.closes == [], clients.closes
        dry = await run_cli("rebalance", "--dry-run", "--name", inst.name)
        after_dry = await poll_status(inst)
        started = await run_cli("rebalance", "--name", inst.name)
        during = await metrics(admin)
        expected = parse_plan(started.stdout)[1][2]
        final = await wait_plan_end(inst, 2 * expected + 30)
        await asyncio.sleep(1)  # the last shed clients reconnect
        return s, dry, after_dry, started, during, final, clients.by_backend()

    clients = ReconnectingClients(inst.url, total)
    s, dry, after_dry, started, during, final, spread = h.run_async(clients.run(body),
                                                                   timeout=240)
    h.log(f"manual: dry run\n{dry.stdout}\nstarted: {started.stdout.splitlines()[-1:]}; "
          f"after the plan {spread}")
    assert dry.returncode == 0, dry
    rows, plan_total = parse_plan(dry.stdout)
    assert set(rows) == {a.address, b.address, c.address}, dry.stdout
    for address, (current, target, surplus, rate, expected) in rows.items():
        assert current == inst.backend(s, address)["active"], (address, dry.stdout, s["backends"])
        assert target == 50, (address, dry.stdout)
        if address == c.address:
            assert surplus == 0 and rate == 0, dry.stdout
        else:
            assert surplus == current - target and rate > 0, dry.stdout
            assert abs(expected - surplus / rate) <= 0.2, dry.stdout
    assert plan_total[0] == total and plan_total[1] == 50, dry.stdout
    assert after_dry["rebalance"]["plans"] == 0 and not after_dry["rebalance"]["running"]
    assert rebalance_closes(after_dry) == 0
    assert started.returncode == 0 and "rebalancing: 50 of 150" in started.stdout, started
    assert final["rebalance"]["plans"] == 1, final["rebalance"]
    codes = [code for _, _, code in clients.closes]
    assert codes and set(codes) == {1012}, codes
    assert len(codes) <= 1.2 * 50, len(codes)
    assert sorted(spread) == ["A", "B", "C"], spread
    assert all(45 <= n <= 55 for n in spread.values()), spread
    assert during[("wslb_rebalance_running", frozenset())] == 1, during
    for address in (a.address, b.address):
        label = frozenset({("backend", address)})
        assert during[("wslb_backend_rebalance_target", label)] == 50, during
        assert during[("wslb_backend_rebalance_surplus", label)] == 25, during
    after = h.run_async(metrics(admin))
    assert after[("wslb_rebalance_running", frozenset())] == 0
    assert after[("wslb_rebalance_plans_total", frozenset())] == 1
    assert after[("wslb_closes_total", frozenset({("cause", "rebalance")}))] == len(codes), after
    inst.stop()


def test_manual_rebalance_right_after_a_handover_counts_every_connection():
    """1,000 clients on A and B over two workers, --rebalance manual; a reload adds C and hands
    every tunnel to the new workers. `wslb rebalance --dry-run` and `wslb rebalance`, sent the
    moment the reload answers, wait for the handover to settle: both plans count all 1,000
    connections (a tunnel in flight between workers counts on neither side; before, a plan
    made then could see 754 of 1,000 and shed too few)."""
    a, b, c, conf, inst = manual_instance("manual-handover")
    total = 1000

    async def body(clients):
        r = await place_then_add_c(clients, total, 90, inst, conf, [a, b, c])
        assert "handing over" in r.stdout, r
        dry, started = await asyncio.gather(
            run_cli("rebalance", "--dry-run", "--name", inst.name),
            run_cli("rebalance", "--name", inst.name))
        s = await poll_status(inst)
        return dry, started, s

    clients = ReconnectingClients(inst.url, total)
    dry, started, s = h.run_async(clients.run(body), timeout=240)
    h.log(f"right after the handover: dry run {dry.stdout.splitlines()[-2:]}, "
          f"started {started.stdout.splitlines()[-1:]}; waited for it to settle: "
          f"{'waiting for' in dry.stdout}, {'waiting for' in started.stdout}")
    assert dry.returncode == 0, dry
    assert parse_plan(dry.stdout)[1][0] == total, dry.stdout
    assert started.returncode == 0, started
    assert parse_plan(started.stdout)[1][0] == total, started.stdout
    assert re.search(r"rebalancing: 33\d of 1000 connections", started.stdout), started.stdout
    assert s["rebalance"]["plans"] == 1, s["rebalance"]
    assert sum(w["connections"] for w in s["workers"] if w["state"] == "draining") == 0, s["workers"]
    inst.stop()


def test_rebalance_off_refuses_and_dry_run_still_shows_the_plan():
    a = h.EchoBackend()
    inst = h.Instance([a.address], workers=1, extra=["--rebalance", "off"])
    r = h.cli("rebalance", "--name", inst.name)
    assert r.returncode == 1 and "rebalancing is off (--rebalance off)" in r.stdout + r.stderr, r
    r = h.cli("rebalance", "--dry-run", "--name", inst.name)
    assert r.returncode == 0 and "balanced within tolerance: nothing to do" in r.stdout, r
    r = h.cli("rebalance", "--now", "--name", inst.name)
    assert r.returncode == 2 and "--now" in r.stderr, r
    assert inst.status()["rebalance"] == {"mode": "off", "running": False, "plans": 0}
    inst.stop()


def hash_rebalance_sheds_only_moved_keys(handover, add_by="reload"):
    """--balance query:room, 240 clients with their own keys on A and B; a reload adds C with
    --rebalance auto: every client shed has a key that now maps to C (it reconnects there), no
    client whose key stays on A or B is shed, and each of A and B sheds its surplus, or all
    its keys that moved when there are fewer. With
    `handover` off the old generation keeps the tunnels (its own configuration has no C); on,
    the new one takes them in with their keys and ages. `add_by` "command": C comes by
    `wslb backend add` instead, into the serving generation."""
    a, b, c = (h.EchoBackend(ident=x) for x in "ABC")
    conf = os.path.join(h.RUNTIME_DIR, f"hash-{handover}-{add_by}-{os.getpid()}.toml")
    h.write_config(conf, [a, b])
    inst = h.Instance([], workers=2,
                      extra=["--config", conf, "--balance", "query:room", "--rebalance", "auto",
                             "--rebalance-min-age", "1s", "--rebalance-rate", "10%",
                             "--drain-timeout", "10m", "--handover", handover])
    total = 240

    def url_for(i):
        return f"{inst.url}?room=key{i}"

    async def probe(i):
        async with websockets.connect(url_for(i), open_timeout=20, ping_interval=None) as ws:
            await ws.send("whoami")
            return json.loads(await ws.recv())["id"]

    async def body(clients):
        assert await clients.wait_placed(total, 60) == total
        await asyncio.sleep(1.5)
        if add_by == "reload":
            h.write_config(conf, [a, b, c])
            r = await run_cli("reload", "--name", inst.name)
        else:
            r = await run_cli("backend", "add", c.address, "--name", inst.name)
        assert r.returncode == 0, r
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (await poll_status(inst))["rebalance"]["plans"] == 0:
            await asyncio.sleep(0.1)
        final = await wait_plan_end(inst, 60)
        await asyncio.sleep(1)
        # Where each key maps now: a fresh connection with it.
        now_maps = {i: await probe(i) for i in range(total)}
        return final, now_maps

    clients = ReconnectingClients(inst.url, total, url_for=url_for)
    final, now_maps = h.run_async(clients.run(body), timeout=240)
    shed = {i for _, i, code in clients.closes if code == 1012}
    moved = {i for i, ident in now_maps.items() if ident == "C"}
    h.log(f"hash, handover {handover}, added by {add_by}: {len(moved)} keys map to C now, {len(shed)} shed, "
          f"{len(shed & moved)} of them moved keys; plans {final['rebalance']['plans']}")
    assert final["rebalance"]["plans"] == 1, final["rebalance"]
    assert shed <= moved, f"shed although their key stays: {sorted(shed - moved)[:10]}"
    # Each of A and B sheds its surplus over the target of 80, or every key of its that moved
    # when there are fewer of those (its part then ends as having nothing left to shed).
    for ident in "AB":
        on_it = {i for i in range(total) if clients.history[i][0] == ident}
        surplus = max(0, len(on_it) - 80) if len(on_it) > 88 else 0
        moved_here, shed_here = len(moved & on_it), len(shed & on_it)
        h.log(f"  {ident}: {len(on_it)} before, surplus {surplus}, {moved_here} keys moved, "
              f"{shed_here} shed")
        assert min(moved_here, surplus) <= shed_here <= 1.2 * surplus, (ident, surplus, moved_here,
                                                                        shed_here)
    assert all(clients.history[i][-1] == "C" for i in shed), "a shed client did not land on C"
    inst.stop()


def test_hash_balance_sheds_only_the_keys_that_now_map_elsewhere():
    hash_rebalance_sheds_only_moved_keys("off")


def test_hash_balance_sheds_only_moved_keys_after_a_handover():
    hash_rebalance_sheds_only_moved_keys("on")


def test_hash_balance_sheds_only_moved_keys_after_backend_add():
    hash_rebalance_sheds_only_moved_keys("on", add_by="command")


def test_auto_after_comeback_and_weight_change_without_oscillation():
    """--rebalance auto, 240 clients on A, B and C (slowstart=3s). C goes down (its clients
    reconnect to A and B) and comes back: a plan starts only once C's slow start is over, and
    evens the load; a weight change (C to 2) starts a second plan towards 60/60/120; after each
    plan no other starts by itself while the clients keep reconnecting (no oscillation)."""
    a, b, c = (h.EchoBackend(ident=x) for x in "ABC")
    inst = h.Instance([a.address, b.address, f"{c.address},slowstart=3s"], workers=2,
                      extra=["--rebalance", "auto", "--rebalance-min-age", "2s",
                             "--rebalance-rate", "10%", "--check-interval", "200ms",
                             "--check-rise", "1", "--check-fall", "1"])
    total = 240

    def within(spread, targets, slack=0.1):
        return all(abs(spread.get(k, 0) - t) <= t * slack for k, t in targets.items())

    async def settle(clients, targets, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (
                len(clients.placed) == total and within(clients.by_backend(), targets)):
            await asyncio.sleep(0.2)
        return clients.by_backend()

    async def quiet(seconds):
        """Plans run by the end of `seconds` of watching, after the last one ended."""
        await asyncio.sleep(seconds)
        return (await poll_status(inst))["rebalance"]["plans"]

    async def body(clients):
        assert await clients.wait_placed(total, 60) == total
        await asyncio.sleep(2.5)
        c.kill()
        without_c = await settle(clients, {"A": 120, "B": 120}, 30)
        assert (await poll_status(inst))["rebalance"]["plans"] == 0, "a plan after a down"
        await asyncio.sleep(2.5)  # the clients on A and B grow older than the minimum age
        c.start()
        s = await wait_first_plan(1)
        first = await wait_plan_end(inst, 60)
        spread1 = await settle(clients, {"A": 80, "B": 80, "C": 80}, 10)
        plans_after_first = await quiet(5)
        r = await run_cli("backend", "weight", c.address, "2", "--name", inst.name)
        assert r.returncode == 0, r
        await wait_first_plan(2)
        await wait_plan_end(inst, 60)
        spread2 = await settle(clients, {"A": 60, "B": 60, "C": 120}, 10)
        plans_after_second = await quiet(5)
        return without_c, s, first, spread1, plans_after_first, spread2, plans_after_second

    async def wait_first_plan(n):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = await poll_status(inst)
            if s["rebalance"]["plans"] >= n:
                return s
            await asyncio.sleep(0.1)
        raise AssertionError(f"no plan number {n} started")

    sampler = Sampler(inst, interval=0.1)
    clients = ReconnectingClients(inst.url, total)
    try:
        without_c, s, first, spread1, plans1, spread2, plans2 = \
            h.run_async(clients.run(body), timeout=300)
    finally:
        samples = sampler.stop()
    h.log(f"auto: without C {without_c}; after the comeback plan {spread1}, plans {plans1}; "
          f"after the weight change {spread2}, plans {plans2}")
    ramping_while_planned = [
        inst.backend(st, c.address).get("ramp_pct") for _, st in samples
        if st["rebalance"]["running"] and
        inst.backend(st, c.address).get("ramp_pct", 100) < 95]
    assert ramping_while_planned == [], f"a plan ran during C's slow start: {ramping_while_planned}"
    assert any("ramp_pct" in inst.backend(st, c.address) for _, st in samples), "no ramp seen"
    assert within(spread1, {"A": 80, "B": 80, "C": 80}), spread1
    assert within(spread2, {"A": 60, "B": 60, "C": 120}), spread2
    assert plans1 == 1 and plans2 == 2, (plans1, plans2)
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
