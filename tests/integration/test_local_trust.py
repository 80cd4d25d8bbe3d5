"""Issue 11, point 5: nothing another local user leaves behind confuses an instance. A table has
a name nobody can guess, found through a record in the private runtime directory, and is
refused unless it is this user's, private and one table long; liveness is the
instance lock's word, not a pid's; the control socket serves only its owner and root and drops
a client that says nothing. The test runs as root and plays the other users with setuid'd
children (subprocess user=...)."""

import fcntl
import os
import socket
import struct
import subprocess
import sys

import harness as h

# Users that exist only as numbers, for this test.
PLANTER, RUNNER, FORGER, INTRUDER = 4201, 4202, 4203, 4204
# Offsets in table_header: magic 8, version 4, flags 4, size 8, then name[64], listen[64], pid.
NAME_OFFSET, MASTER_PID_OFFSET = 24, 152


def _as(uid, code):
    """Runs python `code` as `uid`; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, user=uid, group=uid, extra_groups=[])


def test_segments_another_user_left_do_not_stop_run_or_fool_status():
    b1 = h.EchoBackend()
    name = h.unique_name("trust")
    # Another user leaves junk where an instance of this name used to keep its table, and
    # where a per-user name would put it: the table's name is random, so neither is in the way.
    planted = [f"/dev/shm/wslb.{name}", f"/dev/shm/wslb.{RUNNER}.{name}",
               f"/dev/shm/wslb.0.{name}"]
    for path in planted:
        r = _as(PLANTER, f"open({path!r}, 'wb').write(b'\\x1b[2J' * 1000)")
        assert r.returncode == 0, r.stderr
    try:
        inst = h.Instance([b1], workers=1, name=name, run_as=h.as_user(RUNNER))
        s = inst.status()
        assert s["master_pid"] == inst.proc.pid and s["name"] == name, s
        table = inst.table_path()
        assert table not in planted
        assert os.stat(table).st_uid == RUNNER and os.stat(table).st_mode & 0o777 == 0o600
        # Root's instance of the same name starts beside it, with its own table.
        mine = h.Instance([b1], workers=1, name=name)
        assert mine.status()["master_pid"] == mine.proc.pid
        assert inst.status()["master_pid"] == inst.proc.pid
        assert mine.table_path() != table
        mine.stop()
        inst.stop()
    finally:
        for path in planted:
            os.unlink(path)


def test_status_refuses_a_table_that_is_not_the_users_own():
    name = h.unique_name("forged")
    runner = h.as_user(RUNNER)
    record = os.path.join(runner["env"]["WSLB_RUNTIME_DIR"], name + ".table")
    segment = f"wslb.{RUNNER}.{name}.0123456789abcdef"
    path = "/dev/shm/" + segment
    cases = [
        (FORGER, 0o600, None, f"owned by uid {FORGER}, not by this user (uid {RUNNER})"),
        (RUNNER, 0o644, None, "open to group or others (mode 0644, expected 0600)"),
        (RUNNER, 0o600, 4096, "of 4096 bytes, but this wslb's table is"),
    ]
    # A full-size image made by a real instance, so that only ownership and mode differ.
    inst = h.Instance([h.EchoBackend()], workers=1)
    with open(inst.table_path(), "rb") as f:
        image = f.read()
    inst.stop()
    # The runner's record names the forged segment (root plays the forger's part in writing it).
    with open(record, "w") as f:
        f.write(segment + "\n")
    os.chown(record, RUNNER, RUNNER)
    for owner, mode, size, expected in cases:
        with open(path, "wb") as f:
            f.write(image[:size] if size else image)
        os.chown(path, owner, owner)
        os.chmod(path, mode)
        r = h.cli("status", "--name", name, **runner)
        os.unlink(path)
        assert r.returncode == 1, r
        assert f"refusing table {path}: it is {expected}" in r.stderr, (expected, r.stderr)
    # A record that is not the user's own is not followed at all.
    os.chown(record, FORGER, FORGER)
    r = h.cli("status", "--name", name, **runner)
    assert r.returncode == 1, r
    assert f"refusing table record {record}: not a plain file of this user's" in r.stderr, r.stderr
    os.unlink(record)


def _stale_table_rewritten(backend, offset, data):
    """An instance whose master was killed (its table left behind, the lock free), with `data`
    written into the table at `offset`. Returns the Instance."""
    inst = h.Instance([backend], workers=1)
    os.kill(inst.proc.pid, 9)
    inst.proc.wait(5)
    with open(inst.table_path(), "r+b") as f:
        f.seek(offset)
        f.write(data)
    return inst


def test_liveness_comes_from_the_lock_not_the_pid():
    b1 = h.EchoBackend()
    # The stale table names a pid that is alive (this test's): only the lock can tell.
    inst = _stale_table_rewritten(b1, MASTER_PID_OFFSET, struct.pack("<i", os.getpid()))
    r = h.cli("status", "--name", inst.name)
    assert r.returncode == 1, r
    assert f"is not running (stale table left by master pid {os.getpid()})" in r.stderr, r.stderr
    # The lock file stayed, and the next master of that name takes the lock on the same inode.
    lock = os.path.join(h.RUNTIME_DIR, inst.name + ".lock")
    inode = os.stat(lock).st_ino
    again = h.Instance([b1], workers=1, name=inst.name)
    assert again.status()["master_pid"] == again.proc.pid
    again.stop()
    assert os.stat(lock).st_ino == inode, "the lock file must never be replaced"


def test_status_shows_table_text_escaped_and_bounded():
    # The user's own table, but its text rewritten: terminal escapes and a name with no NUL.
    inst = _stale_table_rewritten(h.EchoBackend(), NAME_OFFSET,
                                  (b"\x1b]0;owned\x07\x1b[2J" + b"N" * 64)[:64])
    # Someone holds the instance lock (a POSIX lock conflicts with the master's OFD lock), so
    # status takes the instance for alive and renders the table.
    lock = os.open(os.path.join(h.RUNTIME_DIR, inst.name + ".lock"), os.O_RDWR)
    fcntl.lockf(lock, fcntl.LOCK_EX)
    try:
        for extra in ([], ["--json"]):
            r = h.cli("status", "--name", inst.name, *extra)
            assert r.returncode == 0, r
            assert "\x1b" not in r.stdout and "\x07" not in r.stdout, r.stdout
            assert "x1b]0;owned" in r.stdout and "N" * 50 in r.stdout, r.stdout
            assert "N" * 51 not in r.stdout, "the name field is 64 bytes, escapes included"
    finally:
        os.close(lock)


def test_control_socket_serves_only_its_owner_and_drops_a_silent_client():
    b1 = h.EchoBackend()
    inst = h.Instance([b1], workers=1)
    path = os.path.join(h.RUNTIME_DIR, inst.name + ".sock")
    # Open the way to the socket file, as a careless chmod would: the peer check still holds.
    os.chmod(h.RUNTIME_DIR, 0o711)
    os.chmod(path, 0o666)
    try:
        r = _as(INTRUDER, f"""
import socket
s = socket.socket(socket.AF_UNIX)
s.connect({path!r})
s.settimeout(20)
try:
    s.sendall(b"stop\\n")
except BrokenPipeError:
    pass  # the refusal may come (and the master hang up) before the command is out
print(s.recv(1000).decode())
""")
    finally:
        os.chmod(path, 0o600)
        os.chmod(h.RUNTIME_DIR, 0o700)
    assert f"error permission denied: uid {INTRUDER} may not control this instance" in r.stdout, r
    assert inst.proc.poll() is None and inst.status()["master_pid"] == inst.proc.pid

    reply = _ask(path, b"")  # a client that says nothing
    assert reply == b"error no command within 5 s\n", reply
    assert h.cli("restart-workers", "--name", inst.name).returncode == 0
    inst.stop()


def _ask(path, line):
    """Sends one raw command line (b"": nothing) to a control socket; returns the reply."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(30)
    if line:
        s.sendall(line)
    reply = b""
    while chunk := s.recv(1000):
        reply += chunk
    s.close()
    return reply


def test_control_commands_are_dispatched_by_their_first_word():
    inst = h.Instance([h.EchoBackend()], workers=1)
    path = os.path.join(h.RUNTIME_DIR, inst.name + ".sock")
    assert _ask(path, b"bogus\n") == b"error unknown command 'bogus'\n"
    assert _ask(path, b"reload now\n") == b"error reload takes no arguments\n"
    assert _ask(path, b"stop soon\n") == b"error stop takes no argument but 'graceful'\n"
    assert inst.status()["master_pid"] == inst.proc.pid
    assert _ask(path, b"restart-workers\n").startswith(b"ok generation 2 running 1 workers")
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
