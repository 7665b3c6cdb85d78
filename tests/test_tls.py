"""TLS for every connection: the system's PostgreSQL 15 server (built with OpenSSL) with a CA and a server
certificate for ``localhost`` made here, and the bundled 18.x tools (built without OpenSSL) connecting
through the relay. The server's own connection log (``log_connections``) is the witness: it records every
session the tool opened, and whether it was encrypted."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from services.config import ConnInfo
from services.errors import explain_tool_failure
from services.sandbox import LocalServer
from services.server.processes import embedded_bindir
from services.server.tls import TlsRelay
from tests.helpers import SYSTEM_PG15, run_cli, watch_cmdlines

#: Every test here starts a PostgreSQL 15 server of its own, with TLS.
pytestmark = pytest.mark.pg

PASSWORD = "tls-Secret-pw-9Z"
SSL_ONLY = """local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostnossl all all all reject
"""
BOTH = """local all all trust
host all all 127.0.0.1/32 scram-sha-256
"""



def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, a server certificate for ``localhost`` that it signed, and a second CA that signed nothing."""
    if not (SYSTEM_PG15 / "postgres").exists() or shutil.which("openssl") is None:
        pytest.skip("needs the system's PostgreSQL 15 server, built with OpenSSL (apt install postgresql-15), "
                    "and openssl: the bundled server has no TLS")
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


class TlsServer:
    def __init__(self, root: Path, certs: Path) -> None:
        self.srv = LocalServer(root / "pg15-tls", bindir=SYSTEM_PG15, password=PASSWORD)
        self.srv.init()
        data = self.srv.datadir
        for name in ("server.crt", "server.key"):
            shutil.copy(certs / name, data / name)
            (data / name).chmod(0o600)
            if self.srv.run_as:
                shutil.chown(data / name, self.srv.run_as)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                       "log_connections = on\n")
        self.hba(SSL_ONLY, reload=False)
        self.srv.start()
        self.log = data / "server.log"

    def hba(self, rules: str, reload: bool = True) -> None:
        (self.srv.datadir / "pg_hba.conf").write_text(rules)
        if reload:
            self.sql("postgres", "SELECT pg_reload_conf()")

    def sql(self, db: str, query: str) -> str:
        """The test's own SQL, over the Unix socket: never mistaken for a session of the tool's."""
        res = subprocess.run([str(SYSTEM_PG15 / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                              str(self.srv.datadir), "-p", str(self.srv.port), "-U", "postgres", "-d", db,
                              "-c", query], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def url(self, db: str, host: str = "localhost", **params: str) -> str:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return f"postgresql://postgres:{PASSWORD}@{host}:{self.srv.port}/{db}" + (f"?{query}" if query else "")

    def sessions_since(self, offset: int) -> list[str]:
        """The server's "connection authorized" lines for the tool's sessions logged after ``offset``
        (the tool names itself dbsage-tui, in its own session and in pg_dump's and psql's)."""
        text = self.log.read_bytes()[offset:].decode(errors="replace")
        return [ln for ln in text.splitlines() if "connection authorized" in ln and "application_name=dbsage-tui" in ln]

    def mark(self) -> int:
        return self.log.stat().st_size


@pytest.fixture(scope="module")
def tls(tmp_path_factory, certs):
    server = TlsServer(tmp_path_factory.mktemp("tls"), certs)
    yield server
    server.srv.destroy()


@pytest.fixture
def tls_db(tls, request):
    name = f"tls_{request.node.name[:40].replace('[', '_').replace(']', '').replace('-', '_')}".lower()
    tls.sql("postgres", f'DROP DATABASE IF EXISTS "{name}"')
    tls.sql("postgres", f'CREATE DATABASE "{name}"')
    tls.sql(name, "CREATE TABLE items (id int PRIMARY KEY, name text);"
                  "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 300) i;")
    tls.hba(SSL_ONLY)
    yield name
    tls.sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dump_of(tls: TlsServer, db: str) -> str:
    res = subprocess.run([str(SYSTEM_PG15 / "pg_dump"), "-h", str(tls.srv.datadir), "-p", str(tls.srv.port),
                          "-U", "postgres", "--restrict-key=fixed", db], capture_output=True, text=True)
    if "restrict-key" in res.stderr:  # a PostgreSQL 15 pg_dump older than the \restrict lines
        res = subprocess.run([str(SYSTEM_PG15 / "pg_dump"), "-h", str(tls.srv.datadir), "-p",
                              str(tls.srv.port), "-U", "postgres", db], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def cli(snapdir: Path, url: str, *args: str):
    return run_cli(*args, "--dir", str(snapdir), env={"DATABASE_URL": url})


def one_error(res) -> str:
    assert "Traceback" not in res.stdout + res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    return errors[0]


def test_ssl_only_server_snapshot_restore_and_rollback_all_over_tls(tls, tls_db, tmp_path):
    """hostssl only and a URL without sslmode: the bundled 18.x tools do everything, and every session the
    tool opened (its own, pg_dump's, psql's) was encrypted; the password is in no argv, file or output."""
    snapdir, url = tmp_path / "snaps", tls.url(tls_db)
    start = tls.mark()
    with watch_cmdlines() as seen:
        outputs = []
        for args in (("snapshot", "--label", "over-tls", "--json"), ("show", "1", "--json"),
                     ("restore", "1", "--yes", "--json"), ("rollback", "--emergency", "--json")):
            if args[0] == "restore":
                tls.sql(tls_db, "DELETE FROM items WHERE id > 100; CREATE TABLE later (x int);")
            res = cli(snapdir, url, *args)
            assert res.returncode == 0, res.stderr
            outputs += [res.stdout, res.stderr]
    meta = json.loads(outputs[2])["metadata"]
    assert meta["pg_dump_version"].startswith("18."), meta["pg_dump_version"]
    assert meta["tls"]["protocol"].startswith("TLSv1."), meta["tls"]
    assert meta["tls"]["sslmode"] == "prefer"
    sessions = tls.sessions_since(start)
    assert len(sessions) >= 6, sessions  # per command our own session; plus pg_dump's and psql's
    assert all("SSL enabled" in s for s in sessions), [s for s in sessions if "SSL enabled" not in s]
    assert any("pg_dump" in c for c in seen) and any("psql" in c for c in seen)
    assert not [c for c in seen if PASSWORD in c]
    for f in snapdir.iterdir():
        assert PASSWORD.encode() not in f.read_bytes(), f
    assert not [o for o in outputs if PASSWORD in o]
    assert int(tls.sql(tls_db, "SELECT count(*) FROM items")) == 300


def test_server_offering_both_prefer_encrypts_and_disable_does_not(tls, tls_db, tmp_path):
    tls.hba(BOTH)
    for params, encrypted in (({}, True), ({"sslmode": "disable"}, False)):
        start = tls.mark()
        res = cli(tmp_path / params.get("sslmode", "prefer"), tls.url(tls_db, **params),
                  "snapshot", "--label", "both", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["tls"]["protocol"] == ("TLSv1.3" if encrypted else "none")
        sessions = tls.sessions_since(start)
        assert len(sessions) >= 2, sessions  # ours and pg_dump's
        assert all(("SSL enabled" in s) == encrypted for s in sessions), sessions


def test_verify_full_with_the_right_ca_works_and_a_bad_certificate_fails_closed(tls, tls_db, tmp_path, certs):
    snapdir = tmp_path / "snaps"
    good = tls.url(tls_db, sslmode="verify-full", sslrootcert=str(certs / "ca.crt"))
    res = cli(snapdir, good, "snapshot", "--label", "verified", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tls"] == {"protocol": "TLSv1.3", "sslmode": "verify-full"}
    shown = cli(snapdir, good, "show", "1")
    assert "TLSv1.3 (sslmode verify-full)" in shown.stdout, shown.stdout
    tls.sql(tls_db, "CREATE TABLE later (x int)")
    before = dump_of(tls, tls_db)
    files = sorted(p.name for p in snapdir.iterdir())
    bad = {"wrong CA": tls.url(tls_db, sslmode="verify-full", sslrootcert=str(certs / "other-ca.crt")),
           "wrong host name": tls.url(tls_db, host="127.0.0.1", sslmode="verify-full",
                                      sslrootcert=str(certs / "ca.crt"))}
    for why, url in bad.items():
        for args in (("snapshot", "--label", "never"), ("restore", "1", "--yes")):
            res = cli(snapdir, url, *args)
            assert res.returncode == 1, (why, args, res.stderr)
            line = one_error(res)
            assert "certificate does not verify" in line, (why, line)
            assert PASSWORD not in res.stdout + res.stderr
    assert "mismatch" in line  # the host name case names what did not match
    assert dump_of(tls, tls_db) == before
    assert sorted(p.name for p in snapdir.iterdir()) == files


def test_psql_subcommand_is_encrypted_through_the_relay(tls, tls_db):
    res = run_cli("psql", "-At", "-c", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                  env={"DATABASE_URL": tls.url(tls_db)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "t|TLSv1.3"


@pytest.mark.parametrize("host", ["aws-0-eu-west-1.pooler.supabase.com", "db.abcdefghijklmnop.supabase.co"])
def test_transaction_pooler_is_refused_before_connecting(tmp_path, host):
    """Supavisor's and the dedicated PgBouncer's transaction mode (port 6543): refused with the URL to use,
    before any name lookup (this machine has no route to Supabase: a connection attempt would say so)."""
    res = cli(tmp_path, f"postgresql://postgres.abcdefghijklmnop:pw@{host}:6543/postgres", "snapshot", "--label", "x")
    assert res.returncode == 2, res.stderr
    line = one_error(res)
    assert "transaction pooler" in line and f"@{host}:5432/postgres" in line, line
    assert ":pw@" not in line


def test_an_ipv6_only_host_out_of_reach_is_named_as_such(tmp_path):
    """2001:db8::/32 is never routed: unreachable at once, or a timeout on networks with an IPv6 route."""
    res = cli(tmp_path, "postgresql://u:pw@[2001:db8::1]:5432/db?connect_timeout=3", "snapshot", "--label", "x")
    assert res.returncode == 1, res.stderr
    assert "2001:db8::1 has IPv6 addresses only" in one_error(res)


def test_channel_binding_require_is_refused_rather_than_ignored(tmp_path):
    res = cli(tmp_path, "postgresql://u:pw@localhost:5432/db?channel_binding=require", "list")
    assert res.returncode == 2, res.stderr
    assert "channel_binding=require" in one_error(res)


def test_a_relay_that_cannot_reach_the_server_says_why_through_psql():
    """The relay's own failure reaches the user as one sentence, via the real (bundled) psql it serves."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    conn = ConnInfo(host="127.0.0.1", port=port, user="postgres", dbname="postgres", password=PASSWORD,
                    params=(("sslmode", "require"),))
    with TlsRelay(conn) as relay:
        res = subprocess.run([str(embedded_bindir() / "psql"), "-X", "-c", "SELECT 1"], env=relay.child_env(),
                             capture_output=True, text=True, timeout=30)
    assert res.returncode != 0
    error = explain_tool_failure(res.stderr, "Restoring")
    assert error.one_line().startswith(
        f"Restoring failed: could not connect to 127.0.0.1:{port}: Connection refused."), error.one_line()
    assert relay.failures and not relay.protocols
    assert not Path(relay.dir).exists()
