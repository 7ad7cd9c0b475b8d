#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Make the example acme2certifier databases and the demo CA's request list.

Writes, into the output folder (default: examples/):
  acme_srv.db            current schema, orders in every state cert_poll meets
  acme_srv_2020.db       the 2020 schema, processing orders only
  demo_ca_requests.json  the requests the demo CA serves for both databases

Keys are made in a temporary folder and thrown away: the databases hold only
CSRs and certificates, as acme2certifier's do.
"""

import argparse
import base64
import datetime
import json
import pathlib
import sqlite3
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMAS = {
    "current": ROOT / "tests" / "support" / "acme_schema.sql",
    "2020": ROOT / "tests" / "support" / "acme_schema_2020.sql",
}
DEMO_CA_BASE = "https://127.0.0.1:18443"

# (order name, certificate name, DNS names, order status, demo CA behaviour)
# A behaviour of None means no poll identifier is stored.
CURRENT_ORDERS = [
    ("Ord1Approved", "CrtApproved1", ["www.example.com", "example.com"],
     "processing", "approve"),
    ("Ord2Approved", "CrtApproved2", ["mail.example.org"],
     "processing", "approve"),
    ("Ord3Rejected", "CrtRejected3", ["shop.example.com"],
     "processing", "reject"),
    ("Ord4Pending", "CrtPending4", ["api.example.org"],
     "processing", "pending"),
    ("Ord5NoPollId", "CrtNoPollId5", ["vpn.example.com"],
     "processing", None),
    ("Ord6Valid", "CrtValid6", ["intranet.example.com"], "valid", None),
    ("Ord7Invalid", "CrtInvalid7", ["old.example.org"], "invalid", None),
]
ORDERS_2020 = [
    ("Old1Approved", "OldCrt1", ["legacy.example.com"], "processing",
     "approve"),
    ("Old2Rejected", "OldCrt2", ["legacy.example.org"], "processing",
     "reject"),
    ("Old3Pending", "OldCrt3", ["printer.example.com"], "processing",
     "pending"),
]


def openssl(*args, cwd):
    return subprocess.run(["openssl", *args], cwd=cwd, check=True,
                          capture_output=True).stdout


def make_csr(work, name, dns_names):
    """Return the base64 DER of a new CSR for dns_names (key discarded)."""
    san = ",".join("DNS:" + n for n in dns_names)
    der = openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                  name + ".key", "-subj", "/CN=" + dns_names[0], "-addext",
                  "subjectAltName=" + san, "-outform", "DER", cwd=work)
    return base64.b64encode(der).decode()


def make_issuer(work):
    """Make a throwaway root and issuing CA for the already valid order."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "root.key",
            "-out", "root.pem", "-days", "3650",
            "-subj", "/CN=example archive root CA", cwd=work)
    (work / "ca.ext").write_text(
        "basicConstraints=critical,CA:TRUE,pathlen:0\n"
        "keyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "int.key",
            "-out", "int.csr", "-subj", "/CN=example archive issuing CA",
            cwd=work)
    openssl("x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey",
            "root.key", "-set_serial", "0x1001", "-days", "1825",
            "-extfile", "ca.ext", "-out", "int.pem", cwd=work)


def issue(work, name, csr_b64):
    """Sign csr_b64 with the issuing CA; return the leaf PEM path."""
    padded = csr_b64 + "=" * (-len(csr_b64) % 4)
    der = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    (work / (name + ".csr.der")).write_bytes(der)
    (work / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("x509", "-req", "-inform", "DER", "-in", name + ".csr.der",
            "-CA", "int.pem", "-CAkey", "int.key", "-set_serial", "0xa1b2c",
            "-days", "90", "-copy_extensions", "copy", "-extfile", "leaf.ext",
            "-out", name + ".pem", cwd=work)
    return work / (name + ".pem")


def unix_time(openssl_date):
    parsed = datetime.datetime.strptime(openssl_date, "%b %d %H:%M:%S %Y GMT")
    return int(parsed.replace(tzinfo=datetime.timezone.utc).timestamp())


def renewal_info(work, leaf):
    """Return renewal_info for leaf: its SHA-256 OCSP CertID, cut after the
    first OCTET STRING header, read from an OCSP request made by openssl."""
    openssl("ocsp", "-issuer", "int.pem", "-sha256", "-cert", str(leaf),
            "-no_nonce", "-reqout", "ocsp.der", cwd=work)
    der = (work / "ocsp.der").read_bytes()
    start = der.index(b"\x04\x20")
    name_hash = der[start + 2:start + 34]
    assert der[start + 34:start + 36] == b"\x04\x20"
    key_hash = der[start + 36:start + 68]
    serial_length = der[start + 69]
    serial = der[start + 68:start + 70 + serial_length]
    return name_hash.hex() + "0420" + key_hash.hex() + serial.hex()


def certificate_columns(work, leaf):
    text = lambda *flags: openssl("x509", "-in", str(leaf), "-noout", *flags,
                                  cwd=work).decode()
    serial = text("-serial").strip().split("=", 1)[1].lower()
    if len(serial) % 2:
        serial = "0" + serial
    aki_lines = text("-ext", "authorityKeyIdentifier").splitlines()
    aki = aki_lines[1].strip().replace("keyid:", "").replace(":", "").lower()
    dates = dict(line.split("=", 1) for line in text("-dates").splitlines())
    der = openssl("x509", "-in", str(leaf), "-outform", "DER", cwd=work)
    chain = leaf.read_text() + (work / "int.pem").read_text()
    return {
        "cert": chain,
        "cert_raw": base64.b64encode(der).decode(),
        "issue_uts": unix_time(dates["notBefore"]),
        "expire_uts": unix_time(dates["notAfter"]),
        "serial": serial,
        "aki": aki,
        "renewal_info": renewal_info(work, leaf),
    }


def status_ids(db):
    return {name: sid for sid, name in db.execute("SELECT id, name FROM status")}


def insert(db, table, row):
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
               list(row.values()))


def build(path, schema, orders, work, requests):
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(SCHEMAS[schema].read_text())
    status = status_ids(db)
    # A public key of no one: acme2certifier needs the columns, cert_poll
    # never reads them.
    jwk = {"kty": "EC", "crv": "P-256", "x": "example-x", "y": "example-y"}
    insert(db, "account", {"name": "AcctExample1", "alg": "ES256",
                           "jwk": json.dumps(jwk),
                           "contact": json.dumps(["mailto:pki@example.com"])})
    account_id = db.execute("SELECT max(id) FROM account").fetchone()[0]
    created = "2026-11-30 08:15:00"
    expires = unix_time("Dec 30 08:15:00 2026 GMT")

    for order_name, cert_name, dns_names, state, behaviour in orders:
        identifiers = json.dumps([{"type": "dns", "value": n}
                                  for n in dns_names])
        insert(db, "orders", {
            "name": order_name, "identifiers": identifiers,
            "account_id": account_id, "status_id": status[state],
            "expires": expires, "created_at": created,
        })
        order_id = db.execute("SELECT max(id) FROM orders").fetchone()[0]
        csr = make_csr(work, cert_name, dns_names)
        if schema == "current":
            # ACME clients send the CSR base64url-encoded without padding,
            # and acme2certifier stores it that way.
            csr = csr.replace("+", "-").replace("/", "_").rstrip("=")
        row = {"name": cert_name, "order_id": order_id, "csr": csr,
               "created_at": created}
        if behaviour is not None:
            request_id = "req-" + cert_name.lower()
            row["poll_identifier"] = f"{DEMO_CA_BASE}/v1/requests/{request_id}"
            row["error"] = "Unknown request status: pending"
            requests.append({"id": request_id, "csr": csr,
                             "behaviour": behaviour})
        if state == "valid":
            row.update(certificate_columns(work, issue(work, cert_name, csr)))
        if state == "invalid":
            row["error"] = "Request rejected by operator"
        insert(db, "certificate", row)
    db.commit()
    db.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "examples",
                        help="output folder (default: examples/)")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    requests = []
    with tempfile.TemporaryDirectory() as temp:
        work = pathlib.Path(temp)
        make_issuer(work)
        build(out / "acme_srv.db", "current", CURRENT_ORDERS, work, requests)
        build(out / "acme_srv_2020.db", "2020", ORDERS_2020, work, requests)
    (out / "demo_ca_requests.json").write_text(
        json.dumps({"requests": requests}, indent=2) + "\n")
    print(f"wrote {out}/acme_srv.db, acme_srv_2020.db, demo_ca_requests.json")


if __name__ == "__main__":
    main()
