"""Host names in --backend (flags and the --config file read again on reload): resolved once
through the system resolver, shown as the operator wrote them, refused with exit 2 when they do
not resolve. Only `localhost` (/etc/hosts) and `.invalid` names: no DNS server is needed."""

import os

import websockets

import harness as h


class NamedEchoBackend(h.EchoBackend):
    """An echo backend that listens on `localhost:PORT`: wslb-echo resolves the name with the same
    resolver call as wslb, so both land on the same address whether it is 127.0.0.1 or ::1."""

    @property
    def address(self):
        return f"localhost:{self.port}"


async def _echo_once(url, text):
    async with websockets.connect(url, open_timeout=5) as ws:
        await ws.send(text)
        return await ws.recv()


def test_backend_name_relays_and_keeps_its_identity_across_reloads():
    b = NamedEchoBackend(ident="named")
    cfg = os.path.join(h.RUNTIME_DIR, "names.toml")
    h.write_config(cfg, [b.address])
    inst = h.Instance([], workers=1, extra=["--config", cfg])
    assert h.run_async(_echo_once(inst.url, "hello by name"), 10) == "hello by name"
    s = inst.status()
    row = inst.backend(s, b.address)  # the name, not the address it resolved to
    assert row["total"] == 1, row
    # The start-up log says what the name resolved to.
    assert any(f"backend {b.address} is {a}" in inst.log() for a in ("127.0.0.1", "::1")), \
        inst.log()

    # Same name on reload: the same backend (no +/-), its counters kept.
    gen = s["generation"]
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "+" not in r.stdout and "-" + b.address not in r.stdout, r.stdout
    h.wait_until(lambda: inst.status()["generation"] == gen + 1, 10, what="reload")
    assert h.run_async(_echo_once(inst.url, "again"), 10) == "again"
    assert inst.backend(inst.status(), b.address)["total"] == 2

    # A name that does not resolve: the reload is refused and nothing changes.
    h.write_config(cfg, ["no-such-host.invalid:80"])
    r = h.cli("reload", "--name", inst.name)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"config file {cfg}: key 'backend': cannot resolve 'no-such-host.invalid'" \
        in r.stderr, r.stderr
    s = inst.status()
    assert s["generation"] == gen + 1, "a refused reload must not restart workers"
    assert [x["address"] for x in s["backends"] if x["state"] == "active"] == [b.address], \
        s["backends"]
    assert h.run_async(_echo_once(inst.url, "still"), 10) == "still"
    inst.stop()


def test_unresolvable_names_exit_2_and_name_flag_and_host():
    port = h.free_port()
    cases = [
        (["--listen", f"127.0.0.1:{port}", "--backend", "no-such-host.invalid:80"], "--backend"),
        (["--listen", "no-such-host.invalid:80", "--backend", "127.0.0.1:9001"], "--listen"),
    ]
    for args, flag in cases:
        r = h.cli("run", *args, timeout=30)
        assert r.returncode == 2, f"{args}: exit {r.returncode}, stderr {r.stderr!r}"
        assert f"{flag}: cannot resolve 'no-such-host.invalid'" in r.stderr, r.stderr
        h.log(r.stderr.strip())
    # A name too long for the status table is refused before any lookup.
    long_name = "a" * 70 + ".invalid"
    r = h.cli("run", "--listen", f"127.0.0.1:{port}", "--backend", f"{long_name}:80")
    assert r.returncode == 2 and "--backend" in r.stderr and long_name in r.stderr, r.stderr
    assert "at most 63" in r.stderr, r.stderr
    h.log(r.stderr.strip())


if __name__ == "__main__":
    h.main(globals())
