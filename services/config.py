"""Where the target database and the snapshot directory come from.

Layering, first match wins (each source is documented where it is read):
  database:  --db-url  >  SUPABASE_DB_URL  >  DATABASE_URL  >  libpq's PG* variables (PGHOST, PGPORT, ...)
  directory: --dir     >  DBSAGE_SNAPSHOT_DIR  >  config file ``snapshot_dir``  >  ./supabase/snapshots
The config file is ``$XDG_CONFIG_HOME/dbsage-tui/config.yaml`` (or DBSAGE_CONFIG); it never holds passwords.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from services.errors import BadInput, OperationFailed
from services.snapshots.compression import METHODS

DEFAULT_SNAPSHOT_DIR = Path("supabase/snapshots")
#: Seconds to wait for a connection before giving up (libpq's connect_timeout, asyncpg's timeout).
DEFAULT_CONNECT_TIMEOUT = 10
#: Seconds a statement may wait for a lock before the server gives up on it (config ``lock_timeout``).
DEFAULT_LOCK_TIMEOUT = 30.0

_LIBPQ_ENV = {
    "host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE",
    "password": "PGPASSWORD", "sslmode": "PGSSLMODE", "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "options": "PGOPTIONS", "application_name": "PGAPPNAME", "target_session_attrs": "PGTARGETSESSIONATTRS",
}


@dataclass(frozen=True)
class ConnInfo:
    """One PostgreSQL connection target. ``password`` never leaves this object except into a child's
    environment or asyncpg's connect call; ``display`` and ``url()`` are what may be shown."""

    host: str = "localhost"
    port: int = 5432
    user: str = "postgres"
    dbname: str = "postgres"
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, str], ...] = ()
    source: str = "default"

    @property
    def sslmode(self) -> str:
        return dict(self.params).get("sslmode", "prefer")

    @property
    def connect_timeout(self) -> int:
        try:
            return int(dict(self.params).get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        except ValueError:
            return DEFAULT_CONNECT_TIMEOUT

    @property
    def command(self) -> str:
        """How the user runs dbsage-tui on this database, for hints meant to be copied and pasted."""
        return "dbsage-tui --demo" if self.source == "--demo" else "dbsage-tui"

    @property
    def display(self) -> str:
        """``user@host:port/dbname`` — safe to print anywhere."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def url(self, reveal: bool = False) -> str:
        """The target as a ``postgresql://`` URL, its password as ``****`` unless ``reveal`` (only for a
        child's environment: the command ``guard`` runs)."""
        secret = self.password and (quote(self.password, safe="") if reveal else "****")
        auth = quote(self.user, safe="") + (f":{secret}" if secret else "")
        host, extra = (self.host, []) if self.uses_tcp else ("", [("host", self.host)])
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in [*extra, *self.params])
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.dbname, safe='')}" + (f"?{query}" if query else "")

    def with_dbname(self, dbname: str) -> ConnInfo:
        return replace(self, dbname=dbname)

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for pg_dump/psql: every connection setting as a PG* variable, so that argv (which
        ``ps`` shows to every user) carries none of it, the password least of all."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("PG") or k == "PGTZ"}
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname})
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        params = {"connect_timeout": str(DEFAULT_CONNECT_TIMEOUT), "application_name": "dbsage-tui",
                  **dict(self.params)}
        env.update({_LIBPQ_ENV[k]: v for k, v in params.items() if k in _LIBPQ_ENV})
        return env

    @property
    def uses_tcp(self) -> bool:
        return not self.host.startswith("/")


def parse_url(url: str, source: str = "--db-url") -> ConnInfo:
    """Parse a ``postgresql://`` URL (percent-encoded user and password, ``?sslmode=...`` and friends)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgres", "postgresql"):
        raise BadInput(f"The database URL from {source} is not a postgresql:// URL.",
                       "Use the form postgresql://user:password@host:5432/dbname.")
    if "," in parts.netloc:
        raise BadInput(f"The database URL from {source} names several hosts.", "Give a single host.")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        port = int(params.pop("port")) if "port" in params else parts.port or 5432
    except ValueError:
        raise BadInput(f"The database URL from {source} has an invalid port.", "Use a number such as 5432.") from None
    host = params.pop("host", None) or (unquote(parts.hostname) if parts.hostname else "localhost")
    user = unquote(parts.username) if parts.username else params.pop("user", None) or os.environ.get("USER", "postgres")
    password = unquote(parts.password) if parts.password is not None else params.pop("password", None)
    dbname = unquote(parts.path.lstrip("/")) or params.pop("dbname", None) or user
    return ConnInfo(host=host, port=port, user=user, dbname=dbname, password=password,
                    params=tuple(sorted(params.items())), source=source)


def from_pg_env(env: dict[str, str]) -> ConnInfo:
    """libpq's own variables, as psql would read them."""
    user = env.get("PGUSER") or env.get("USER") or "postgres"
    try:
        port = int(env.get("PGPORT", "5432"))
    except ValueError:
        raise BadInput("PGPORT is not a number.", "Set PGPORT to the server's port, e.g. 5432.") from None
    params = {k: env[v] for k, v in _LIBPQ_ENV.items()
              if k not in ("host", "port", "user", "dbname", "password") and v in env}
    return ConnInfo(host=env.get("PGHOST", "localhost"), port=port, user=user,
                    dbname=env.get("PGDATABASE", user), password=env.get("PGPASSWORD"),
                    params=tuple(sorted(params.items())), source="PG* environment")


def resolve_target(db_url: str | None, env: dict[str, str] | None = None) -> ConnInfo | None:
    """The database to work on, by the layering above; None when nothing at all is configured."""
    env = os.environ if env is None else env
    name = next((n for n in ("SUPABASE_DB_URL", "DATABASE_URL") if env.get(n)), None)
    if db_url or name:
        conn = parse_url(db_url or env[name], "--db-url" if db_url else name)
    elif any(env.get(v) for v in ("PGHOST", "PGDATABASE", "PGUSER", "PGPORT", "PGSERVICE")):
        conn = from_pg_env(env)
    else:
        return None
    check_target(conn)
    return conn


# -- hosted Supabase's endpoints ---------------------------------------------------------------------------
#: Supabase's transaction-mode poolers: Supavisor (``*.pooler.supabase.com``) and the dedicated PgBouncer
#: (``db.<ref>.supabase.co``), both on 6543. They hand each transaction to any server session, so pg_dump's
#: snapshot, psql's single transaction and the advisory lock would not hold.
TRANSACTION_POOLER_PORT = 6543
_SUPABASE_HOST = re.compile(r"(^|\.)(pooler\.supabase\.com|supabase\.co)$", re.IGNORECASE)
_DIRECT_HOST = re.compile(r"^db\.([a-z0-9]+)\.supabase\.co$", re.IGNORECASE)


def check_target(conn: ConnInfo) -> None:
    """Refuse, before connecting, what cannot work or would be weaker than asked."""
    if dict(conn.params).get("channel_binding") == "require":
        raise BadInput(f"The URL from {conn.source} asks for channel_binding=require, which neither our connection "
                       "(asyncpg) nor the bundled pg_dump/psql can do.",
                       "Leave it out and use sslmode=verify-full, which checks the server's certificate.")
    if conn.port == TRANSACTION_POOLER_PORT and _SUPABASE_HOST.search(conn.host):
        raise BadInput(
            f"{conn.host}:{conn.port} ({conn.source}) is Supabase's transaction pooler, which cannot keep the "
            "session a snapshot or a restore needs.",
            f"Use the session pooler: the same URL with port 5432 (postgresql://{conn.user}:…@{conn.host}:5432/"
            f"{conn.dbname}), from the dashboard's Connect panel.")


def ipv6_only_advice(conn: ConnInfo) -> OperationFailed | None:
    """When a host that has IPv6 addresses only cannot be reached (Supabase's direct host on many plans,
    seen from a network without IPv6), the sentence that says so; None otherwise."""
    try:
        families = {info[0] for info in socket.getaddrinfo(conn.host, conn.port, type=socket.SOCK_STREAM)
                    if conn.uses_tcp}
    except OSError:
        return None
    if families != {socket.AF_INET6}:
        return None
    direct = _DIRECT_HOST.match(conn.host)
    hint = (f"Use the session pooler instead: postgresql://postgres.{direct.group(1)}:…@"
            "aws-0-<region>.pooler.supabase.com:5432/postgres (the dashboard's Connect panel, Session pooler)."
            if direct else "Connect from a network with IPv6, or use an address of the server this machine reaches.")
    return OperationFailed(f"{conn.host} has IPv6 addresses only, and none of them answered from this machine.", hint)


@dataclass(frozen=True)
class Policy:
    """Retention tiers in days (config ``retention:``): everything younger than ``keep_all_days``, the
    newest per day until ``daily_days``, the newest per ISO week until ``weekly_days``; and the newest
    ``pre_rollback`` of the snapshots restores take automatically (a full copy each, they would pile up).
    The defaults are the recommended policy; the tiers must be increasing."""

    keep_all_days: int = 7
    daily_days: int = 30
    weekly_days: int = 365
    pre_rollback: int = 3

    def __post_init__(self) -> None:
        if self.pre_rollback < 0:
            raise BadInput(f"Invalid retention pre_rollback {self.pre_rollback}.", "Use 0 or more, e.g. 3.")
        if not 0 <= self.keep_all_days <= self.daily_days <= self.weekly_days:
            tiers = f"{self.keep_all_days}/{self.daily_days}/{self.weekly_days}"
            raise BadInput(f"Invalid retention policy {tiers} days: the tiers must not overlap.",
                           "Use increasing values, e.g. keep all 7, daily 30, weekly 365.")


@dataclass(frozen=True)
class Settings:
    """The config file, checked once: every value typed, a bad one named in one sentence.

    - ``snapshot_dir``: where snapshots live (after --dir and DBSAGE_SNAPSHOT_DIR);
    - ``compress``: none | gzip | zstd, the default for new snapshots (CLI and TUI);
    - ``lock_timeout``: seconds a statement may wait for another session's lock;
    - ``retention``: the cleanup policy's tiers;
    - ``keymap``: binding id -> key(s), e.g. ``{new-snapshot: ctrl+n}`` (ids are listed in the help screen).
    """

    snapshot_dir: Path | None = None
    compress: str = "none"
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    retention: Policy = Policy()
    keymap: dict[str, str] = field(default_factory=dict)


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """The config file's settings, the defaults when there is none. A broken file is bad input, not a traceback."""
    env = os.environ if env is None else env
    path = Path(env.get("DBSAGE_CONFIG")
                or Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "dbsage-tui" / "config.yaml")
    if not path.exists():
        return Settings()
    import yaml  # only with a config file
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else (
            getattr(exc, "problem", None) or getattr(exc, "strerror", None) or "not valid YAML")
        raise BadInput(f"The config file {path} cannot be read: {why}.", "Fix or remove it.") from None
    if not isinstance(raw, dict):
        raise BadInput(f"The config file {path} is not a mapping.", "Fix or remove it.")
    compress, timeout = str(raw.get("compress") or "none"), raw.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)
    tiers, keymap, directory = raw.get("retention") or {}, raw.get("keymap") or {}, raw.get("snapshot_dir")
    if compress not in METHODS:
        raise BadInput(f"The config file's compress is {compress!r}.", "Use none, gzip or zstd.")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise BadInput(f"The config file's lock_timeout is {timeout!r}.", "Use a number of seconds, e.g. 30.")
    if not isinstance(tiers, dict):
        raise BadInput("The config file's retention: is not a mapping.", "Fix or remove it.")
    if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
        raise BadInput("The config file's keymap: is not a mapping of binding ids to keys.",
                       "Write e.g. keymap: {new-snapshot: ctrl+n}.")
    try:
        retention = Policy(**{k: int(v) for k, v in tiers.items() if k in Policy.__dataclass_fields__})
    except (TypeError, ValueError):
        raise BadInput("The config file's retention values are not whole numbers of days.",
                       "Fix or remove them.") from None
    return Settings(snapshot_dir=Path(directory) if directory else None, compress=compress,
                    lock_timeout=float(timeout), retention=retention, keymap={str(k): v for k, v in keymap.items()})


def resolve_snapshot_dir(cli_dir: str | None, env: dict[str, str] | None = None,
                         settings: Settings | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(cli_dir or env.get("DBSAGE_SNAPSHOT_DIR")
                or (settings or load_settings(env)).snapshot_dir or DEFAULT_SNAPSHOT_DIR)


def data_dir() -> Path:
    """Per-user data directory (the demo server and its snapshots live here)."""
    return Path(os.environ.get("DBSAGE_DATA_DIR")
                or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "dbsage-tui")
