"""Issue 13, the newcomer's first minutes: `wslb demo` prints the dashboard's address beside the
connect hint, and every command it prints works, using only what `scripts/demo` installs."""

import os
import re
import shlex
import subprocess

import admin_client as a
import harness as h

SOURCE_DIR = os.environ.get("WSLB_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")


def demo_packages():
    """The Debian packages `scripts/demo` has installed: install-deps's base list and --demo's."""
    script = open(os.path.join(SOURCE_DIR, "scripts", "install-deps")).read()
    assert "install-deps --demo" in open(os.path.join(SOURCE_DIR, "scripts", "demo")).read()
    base = re.search(r"want=\(([^)]*)\)", script).group(1).split()
    demo = re.search(r'"--demo" \]\]; then\s*want\+=\(([^)]*)\)', script).group(1).split()
    return set(base + demo)


def with_dependencies(packages):
    """`packages` and everything they depend on, as apt installs them."""
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                          "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                          *sorted(packages)], capture_output=True, text=True, timeout=120)
    names = {line.split(":")[-1].strip().strip("<>") for line in out.stdout.splitlines()}
    return {n.split(":")[0] for n in names if n} | set(packages)


def package_of(program):
    path = os.path.realpath(program if os.path.isabs(program) else
                            subprocess.check_output(["which", program], text=True).strip())
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if out.returncode != 0:  # /usr/bin/x may be listed under /bin/x (merged /usr)
        out = subprocess.run(["dpkg", "-S", path.replace("/usr/bin/", "/bin/")],
                             capture_output=True, text=True)
    assert out.returncode == 0, f"{program}: no Debian package owns {path}"
    return out.stdout.split(":")[0]


def test_demo_prints_commands_that_work_with_what_scripts_demo_installs():
    port, admin = h.free_port(), h.free_port()
    name = h.unique_name("demo")
    out_path = os.path.join(h.RUNTIME_DIR, "demo.out")
    proc = h.start_process([h.WSLB, "demo", "--listen", f"127.0.0.1:{port}", "--admin",
                            f"127.0.0.1:{admin}", "--name", name], log_path=out_path)
    commands = h.wait_until(
        lambda: (dict(re.findall(r"^  (\w+):\s+(.*?)(?:   \(.*)?$", open(out_path).read(), re.M))
                 if "stop:" in open(out_path).read() else None), 20, what="the demo's hints")
    assert set(commands) >= {"connect", "status", "dashboard", "metrics", "stop"}, commands
    h.wait_until(lambda: h.cli("status", "--name", name).returncode == 0, 10,
                 what="the demo instance")
    packages = with_dependencies(demo_packages())
    wslb = os.path.realpath(h.WSLB)
    for what, command in commands.items():
        if what == "dashboard":
            continue
        program = shlex.split(command.replace("Ctrl-C here, or ", ""))[0]
        if os.path.realpath(program) != wslb:
            assert package_of(program) in packages, (what, program, package_of(program))

    # The connect hint: a line typed comes back (stdin stays open until it has).
    typed = os.path.join(h.RUNTIME_DIR, "connect.out")
    with open(typed, "w") as out:
        client = subprocess.Popen(shlex.split(commands["connect"]), stdin=subprocess.PIPE,
                                  stdout=out, stderr=subprocess.STDOUT)
    client.stdin.write(b"hello demo\n")
    client.stdin.flush()
    try:
        h.wait_until(lambda: "< hello demo" in open(typed).read(), 20, what="the echo")
    finally:
        client.stdin.close()
        client.wait(10)
    status = subprocess.run(shlex.split(commands["status"]), capture_output=True, text=True,
                            timeout=30)
    assert status.returncode == 0 and "BACKENDS" in status.stdout, status
    metrics = subprocess.run(shlex.split(commands["metrics"]), capture_output=True, text=True,
                             timeout=30)
    assert "wslb_backend_connections{" in metrics.stdout, metrics
    url = commands["dashboard"].split()[0]
    assert url == f"http://127.0.0.1:{admin}/", url
    code, _, page = a.get(admin, "/")
    assert code == 200 and "<canvas" in page
    stop = subprocess.run(shlex.split(commands["stop"].replace("Ctrl-C here, or ", "")),
                          capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0, stop
    assert proc.wait(15) == 0


if __name__ == "__main__":
    h.main(globals())
