"""Issue 11, point 4: a --config file is checked like the flags. An unknown key, a list where
one value goes, or a bad value exits 2 at start naming the file, the key and the value; on
reload the same message refuses the reload and nothing changes. Real binary, loopback."""

import os

import harness as h


def _config(name, text):
    path = os.path.join(h.RUNTIME_DIR, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _run(cfg):
    return h.cli("run", "--name", h.unique_name(), "--listen", f"127.0.0.1:{h.free_port()}",
                 "--config", cfg, timeout=20)


def test_unknown_and_mistyped_keys_stop_run_with_exit_2():
    b1 = h.EchoBackend()
    cases = [
        ("workrs.toml", "workrs = 4\n", ["unknown key 'workrs'", "'4'"]),
        ("drain.toml", 'drain-timout = "5s"\n', ["unknown key 'drain-timout'", "'5s'"]),
        ("section.toml", "[check]\nrise = 2\n", ["unknown key 'check.rise'"]),
        ("type.toml", 'workers = "four"\n', ["key 'workers'", "'four'", "whole number"]),
        ("range.toml", "check-fall = 1000\n", ["key 'check-fall'", "'1000'", "1 to 100"]),
        ("list.toml", 'balance = ["least-conn", "round-robin"]\n',
         ["key 'balance' takes one value"]),
    ]
    for file_name, text, expected in cases:
        cfg = _config(file_name, f'backend = ["{b1.address}"]\n' + text)
        r = _run(cfg)
        assert r.returncode == 2, (file_name, r.returncode, r.stderr)
        assert r.stderr.startswith(f"wslb run: config file {cfg}: "), r.stderr
        for word in expected:
            assert word in r.stderr, (file_name, word, r.stderr)


def test_a_bad_config_file_refuses_the_reload_and_changes_nothing():
    b1, b2 = h.EchoBackend(), h.EchoBackend()
    cfg = _config("reload-keys.toml", f'backend = ["{b1.address}"]\nworkers = 2\n')
    inst = h.Instance([], workers=2, extra=["--config", cfg])
    before = h.without_counters(inst.status())
    for text, expected in [
        (f'backend = ["{b1.address}", "{b2.address}"]\nworkrs = 4\n', "unknown key 'workrs'"),
        (f'backend = ["{b2.address}"]\ndrain-timeout = "soon"\n', "key 'drain-timeout': 'soon'"),
    ]:
        _config("reload-keys.toml", text)
        r = h.cli("reload", "--name", inst.name)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "reload refused, configuration unchanged: config file " + cfg in r.stderr, r.stderr
        assert expected in r.stderr, r.stderr
        assert h.without_counters(inst.status()) == before
    inst.stop()


if __name__ == "__main__":
    h.main(globals())
