"""TLS termination: certificates and their errors, status, reload, session-ticket keys."""

import os
import time

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
                      extra=[*_tls_flags(alpha), "--tls-ticket-rotation", "1s"])
    h.wait_until(lambda: inst.status()["tls"]["ticket_keys"] == 2, 5, what="a rotation")
    ages = []
    for _ in range(5):
        ages.append(inst.status()["tls"]["ticket_key_age_s"])
        time.sleep(0.4)
    assert max(ages) <= 2, ages  # rotated every second (the master's tick is 100 ms)
    inst.stop()
    plain = h.Instance([backend], workers=1)
    assert plain.status()["tls"] is None
    plain.stop()


if __name__ == "__main__":
    h.main(globals())
