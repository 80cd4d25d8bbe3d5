"""A throwaway PKI for the TLS tests, made with the `openssl` command: a CA, certificates it
signs (ECDSA P-256 or RSA 2048, with DNS names), and odd ones (expired, mismatched). Private
keys live only in the test's runtime directory, never in the repository."""

import os
import subprocess


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"
    return r.stdout


def _new_key(path, kind, cwd):
    if kind == "rsa":
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path,
                 cwd=cwd)
    else:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                 path, cwd=cwd)


class TestPKI:  # not a test: a helper the TLS tests share
    def __init__(self, directory, ca_name="wslb test CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_key = os.path.join(directory, "ca.key")
        self.ca_cert = os.path.join(directory, "ca.pem")
        _new_key(self.ca_key, "ec", directory)
        _openssl("req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca_cert, "-days", "30",
                 "-subj", f"/CN={ca_name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)

    def issue(self, name, dns_names, kind="ec", days=30, ips=()):
        """A certificate for `dns_names` (and IP addresses `ips`) signed by the CA: returns
        (cert_path, key_path)."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.pem")
        ext = os.path.join(self.dir, f"{name}.ext")
        _new_key(key, kind, self.dir)
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={dns_names[0]}",
                 cwd=self.dir)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=" + ",".join([f"DNS:{n}" for n in dns_names] +
                                                 [f"IP:{a}" for a in ips]) + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                 "-CAcreateserial", "-days", str(days), "-extfile", ext, "-out", cert,
                 cwd=self.dir)
        return cert, key

    def expired(self, name):
        """A self-signed certificate that expired in 2020: (cert_path, key_path)."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.pem")
        _new_key(key, "ec", self.dir)
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}", cwd=self.dir)
        db = os.path.join(self.dir, f"{name}.db")
        conf = os.path.join(self.dir, f"{name}.cnf")
        open(db, "w").close()
        with open(os.path.join(self.dir, f"{name}.serial"), "w") as f:
            f.write("01\n")
        with open(conf, "w") as f:
            f.write(f"[ca]\ndefault_ca=d\n[d]\ndatabase={db}\nnew_certs_dir={self.dir}\n"
                    f"serial={self.dir}/{name}.serial\ndefault_md=sha256\npolicy=p\n"
                    "[p]\ncommonName=supplied\n")
        _openssl("ca", "-config", conf, "-batch", "-selfsign", "-keyfile", key, "-in", csr,
                 "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-out", cert,
                 cwd=self.dir)
        return cert, key
