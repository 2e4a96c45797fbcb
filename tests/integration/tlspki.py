"""A throwaway PKI for the TLS tests, made with the openssl command.

One CA, and leaves signed by it for 127.0.0.1 and localhost: ECDSA P-256
(the default), RSA 2048, one that expired in 2020, one that expires in 3
days, and a second ECDSA key that matches none of them.  Keys are written
mode 600, as wsplugd requires.
"""

import os
import ssl
import subprocess

CA_CNF = """[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[p]
commonName = supplied
"""


def _run(args, cwd):
    subprocess.run(["openssl"] + args, cwd=cwd, check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


def _key(d, name, kind):
    alg = (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
           if kind == "ec" else
           ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    _run(["genpkey"] + alg + ["-out", name], d)
    os.chmod(os.path.join(d, name), 0o600)


def _leaf(d, name, kind, dates=None, days=30):
    _key(d, name + ".key", kind)
    _run(["req", "-new", "-key", name + ".key", "-out", name + ".csr",
          "-subj", "/CN=localhost",
          "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], d)
    span = (["-startdate", dates[0], "-enddate", dates[1]] if dates
            else ["-days", str(days)])
    _run(["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem",
          "-keyfile", "ca.key", "-in", name + ".csr", "-out", name + ".pem",
          "-notext"] + span, d)


class PKI:
    def __init__(self, d):
        self.dir = str(d)
        os.makedirs(self.dir, exist_ok=True)
        d = self.dir
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(CA_CNF)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("01\n")
        _key(d, "ca.key", "ec")
        _run(["req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem",
              "-subj", "/CN=wsplugd test CA", "-days", "30"], d)
        _leaf(d, "ec", "ec")
        _leaf(d, "rsa", "rsa")
        _leaf(d, "expired", "ec", ("20200101000000Z", "20200102000000Z"))
        _leaf(d, "soon", "ec", days=3)
        _key(d, "other.key", "ec")

    def ocsp_response(self, cert, out):
        """A DER OCSP response for cert ("good"), signed by the CA."""
        _run(["ocsp", "-issuer", "ca.pem", "-cert", cert, "-no_nonce",
              "-reqout", out + ".req"], self.dir)
        _run(["ocsp", "-index", "index.txt", "-rsigner", "ca.pem",
              "-rkey", "ca.key", "-CA", "ca.pem", "-reqin", out + ".req",
              "-respout", out, "-ndays", "1"], self.dir)
        return self.path(out)

    def path(self, name):
        return os.path.join(self.dir, name)

    def tls_section(self, cert="ec.pem", key="ec.key", **extra):
        lines = ["[tls]", f"certificate = {self.path(cert)}",
                 f"key = {self.path(key)}"]
        lines += [f"{k} = {v}" for k, v in extra.items()]
        return "\n".join(lines) + "\n"

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        return ctx

    def serial_of(self, cert):
        """The serial number of a leaf, as the peer certificate shows it."""
        out = subprocess.run(
            ["openssl", "x509", "-in", self.path(cert), "-noout",
             "-serial"], capture_output=True, text=True, check=True,
            timeout=30).stdout
        return out.strip().split("=", 1)[1].upper().lstrip("0")
