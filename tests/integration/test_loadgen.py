"""wslb-loadgen against wslb-echo: every mode produces one JSON line whose counts add up, with
several processes and source addresses, and a dead or silent target is reported as failures
within a bounded time instead of hanging."""

import json
import subprocess
import time

import harness
from harness import EchoBackend


def loadgen(*args, timeout=60):
    t = time.monotonic()
    p = subprocess.run([harness.LOADGEN, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, (p.returncode, p.stdout, p.stderr)
    return p.returncode, json.loads(lines[0]), time.monotonic() - t


def test_echo_counts_messages_and_latency():
    a, b = EchoBackend(), EchoBackend()
    rc, r, _ = loadgen("--mode", "echo", "--target", a.address, "--target", b.address,
                       "-n", 20, "-s", 100, "-d", 1, "--warmup", 0.2, "--sources", 2)
    assert rc == 0 and r["complete"] and r["opened"] == 20 and r["failed"] == 0, r
    assert r["messages"] > 100 and r["rtt_us"]["count"] == r["messages"], r
    assert 0 < r["rtt_us"]["p50"] <= r["rtt_us"]["p99"] <= r["rtt_us"]["max"], r
    assert abs(r["mb_per_s"] - r["msgs_per_s"] * 100 / 1e6) < 0.01, r


def test_hold_verifies_every_connection_across_processes():
    b = EchoBackend()
    rc, r, _ = loadgen("--mode", "hold", "--target", b.address, "-n", 600, "-d", 0.5,
                       "--processes", 3, "--sources", 3)
    assert rc == 0 and r["processes"] == 3, r
    assert r["opened"] == 600 and r["verified"] == 600 and r["failed"] == 0, r


def test_churn_counts_cycles_without_failures():
    b = EchoBackend()
    rc, r, _ = loadgen("--mode", "churn", "--target", b.address, "-c", 8, "-d", 1, "--sources", 2)
    assert rc == 0 and r["cycles"] > 50 and r["failed"] == 0, r
    assert r["handshakes_per_s"] > 50, r


def test_refused_and_silent_targets_fail_in_bounded_time():
    port = harness.free_port()  # nothing listens there
    rc, r, took = loadgen("--mode", "echo", "--target", f"127.0.0.1:{port}", "-n", 5, "-d", 0.5,
                          "--warmup", 0)
    assert rc == 1 and r["failures"]["connect"] == 5 and r["opened"] == 0, r
    hole = EchoBackend(extra=["--black-hole"])
    rc, r, took = loadgen("--mode", "hold", "--target", hole.address, "-n", 5, "-d", 0.2,
                          "--timeout", 1)
    assert rc == 1 and r["failures"]["timeout"] == 5, r
    assert took < 20, took


if __name__ == "__main__":
    harness.main(globals())
