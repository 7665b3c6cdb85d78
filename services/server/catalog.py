"""Catalog inspection over asyncpg: connecting, server facts, a snapshot's scope, counts (the SQL that clears a
scope before a replay is ``services.server.clearing``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import asyncpg

from services.config import ConnInfo, ipv6_only_advice
from services.errors import BadInput, DbsageError, explain_tool_failure
from services.server.tls import TLS_REQUIRED, client_context, tls_failure

SYSTEM_SCHEMA_RE = re.compile(r"^(pg_catalog|information_schema|pg_toast.*|pg_temp_.*)$")

#: Schemas that Supabase manages; out of a snapshot's scope by default, as ``supabase db dump`` does.
#: ``supabase_migrations`` is not one of them: it is the CLI's migration history, made by ``postgres``,
#: and it must roll back with the schema it describes.
SUPABASE_MANAGED = (
    "auth", "storage", "extensions", "realtime", "_realtime", "_analytics", "_supavisor",
    "supabase_functions", "graphql", "graphql_public", "pgbouncer", "pgsodium",
    "pgsodium_masks", "vault", "cron", "net", "pgmq", "pgtle", "repack", "dbdev", "etl", "topology", "tiger",
    "tiger_data",
)
SUPABASE_MANAGED_PREFIXES = ("timescaledb_",)
#: The Supabase CLI's migration history (``schema_migrations``, ``seed_files``).
HISTORY_SCHEMA = "supabase_migrations"


#: An ``aclexplode(...) a`` row's grantee as GRANT names it, and the row as "PRIVILEGE TO grantee[ WITH GRANT OPTION]".
GRANTEE_SQL = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END"
GRANT_SQL = (f"format('%s TO %s%s', a.privilege_type, {GRANTEE_SQL}, "
             "CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)")


def quote_ident(name: str) -> str:
    """Always quoted: also the pg_dump name pattern matching exactly ``name`` (``*``, ``?`` and case literal)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def is_managed(schema: str) -> bool:
    return schema in SUPABASE_MANAGED or schema.startswith(SUPABASE_MANAGED_PREFIXES)


def connect_kwargs(conn: ConnInfo, settings: dict[str, str] | None = None) -> dict:
    """asyncpg's arguments for ``conn``: under ``require`` and ``verify-*`` the TLS rules of the relay that
    carries pg_dump and psql (``services.server.tls``), so that both verify alike; asyncpg's own ``prefer`` and
    ``allow`` fall back to cleartext exactly as libpq's do."""
    return {"host": conn.host, "port": conn.port, "user": conn.user, "database": conn.dbname,
            "password": conn.password, "timeout": conn.connect_timeout,
            "server_settings": {"application_name": dict(conn.params).get("application_name", "dbsage-tui"),
                                **(settings or {})},
            "ssl": client_context(conn) if conn.sslmode in TLS_REQUIRED else conn.sslmode}


async def connect(conn: ConnInfo, settings: dict[str, str] | None = None) -> asyncpg.Connection:
    """Connect with a bounded timeout (``settings``: server settings sent with the startup packet, at no
    extra round trip); failures become one clear sentence, never a traceback."""
    try:
        con = await asyncio.wait_for(asyncpg.connect(**connect_kwargs(conn, settings)), conn.connect_timeout + 1)
    except ssl.SSLError as exc:
        raise tls_failure(exc, conn) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        text = "timeout expired" if isinstance(exc, TimeoutError) else str(exc)
        if isinstance(exc, OSError) and not isinstance(exc, ConnectionRefusedError) and (
                advice := ipv6_only_advice(conn)):
            raise advice from None  # unreachable or timed out: a network without IPv6
        if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in text:
            text = "Connection refused"
        if isinstance(exc, OSError) and "Name or service not known" in text:
            text = "could not translate host"
        raise explain_tool_failure(text, f"Connecting to {conn.display}", conn.source) from None
    await con.execute("SET search_path = pg_catalog")
    return con


async def close_quietly(con: asyncpg.Connection) -> None:
    """Close without waiting long or raising: for cleanup paths, where the connection may be broken."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(con.close(), 5)


@contextlib.asynccontextmanager
async def closing(connecting: Awaitable[asyncpg.Connection]) -> AsyncIterator[asyncpg.Connection]:
    """``async with closing(connect(conn)) as con``: the connection, closed quietly on the way out."""
    con = await connecting
    try:
        yield con
    finally:
        await close_quietly(con)


@dataclass
class ServerInfo:
    version: str  # e.g. "PostgreSQL 18.6"
    version_num: int
    current_user: str
    superuser: bool
    supabase: bool
    supabase_version: str | None
    database: str
    #: The newest applied Supabase migration: {"version": ..., "name": ...}, or None.
    migration: dict | None = None
    #: The TLS protocol of our session ("TLSv1.3"), None when it is not encrypted.
    tls: str | None = None

    @property
    def major(self) -> int:
        return self.version_num // 10000


async def server_info(con: asyncpg.Connection) -> ServerInfo:
    row = await con.fetchrow(
        """SELECT current_setting('server_version') AS v, current_setting('server_version_num')::int AS n,
                  current_user AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su,
                  current_database() AS db,
                  (SELECT count(*) FROM pg_roles WHERE rolname IN ('anon','authenticated','service_role')) = 3
                  AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') AS supabase,
                  to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS has_migrations,
                  (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl) AS tls""")
    head = None
    if row["has_migrations"]:  # (older CLIs made the table without a name column: to_jsonb reads it as NULL)
        with contextlib.suppress(asyncpg.PostgresError):
            head = await con.fetchrow("SELECT version::text, to_jsonb(m) ->> 'name' AS name "
                                      "FROM supabase_migrations.schema_migrations m ORDER BY version DESC LIMIT 1")
    return ServerInfo(version=f"PostgreSQL {row['v'].split(' ')[0]}", version_num=row["n"], current_user=row["u"],
                      superuser=bool(row["su"]), supabase=bool(row["supabase"]),
                      supabase_version=head["version"] if head else None, database=row["db"],
                      migration=dict(head) if head else None, tls=row["tls"])


async def roles_not_ours(con: asyncpg.Connection) -> list[str]:
    """Roles whose default privileges the connecting role may not change (PostgreSQL 16+ asks for their
    privileges, 15 for membership), as pg_dump quotes them."""
    return [r["name"] for r in await con.fetch(
        "SELECT quote_ident(rolname) AS name FROM pg_roles WHERE NOT pg_has_role(oid, "
        "CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'USAGE' ELSE 'MEMBER' END) "
        "ORDER BY 1")]


@dataclass
class Scope:
    """What a snapshot covers. ``mode`` is "all-except" (every non-system schema but ``excluded``) or "only"
    (exactly ``schemas``, from --schema). ``schemas`` is always the concrete list at snapshot time."""

    mode: str
    schemas: list[str]
    excluded: list[str] = field(default_factory=list)
    excluded_extensions: list[str] = field(default_factory=list)
    supabase: bool = False
    extensions: list[str] = field(default_factory=list)  # extensions living in the scope's schemas
    #: Schemas left out because of who owns them: schema -> owner (a role the connecting role cannot act as).
    owned_by_others: dict[str, str] = field(default_factory=dict)

    @property
    def dumps_everything(self) -> bool:
        """pg_dump writes database-wide default privileges and publications only for a whole-database,
        non-Supabase scope (it leaves them out with --schema; Supabase's belong to the platform)."""
        return self.mode == "all-except" and not self.supabase

    def pg_dump_args(self, tools_major: int, schema_only: bool = False) -> list[str]:
        """pg_dump's arguments for the data and the scope. A schema snapshot of a Supabase project keeps the
        migration history's rows: restoring the structure of some day with the history of today (or none)
        would have ``supabase db push`` re-apply, or skip, the wrong migrations. So it is a full dump without
        the other schemas' table data."""
        if not schema_only:
            args = []
        elif self.supabase and HISTORY_SCHEMA in self.schemas:
            args = [f"--exclude-table-data={quote_ident(s)}.*" for s in self.schemas if s != HISTORY_SCHEMA]
        else:
            args = ["--schema-only"]
        if self.mode == "only":
            return args + [f"--schema={quote_ident(s)}" for s in self.schemas]
        args += [f"--exclude-schema={quote_ident(s)}" for s in self.excluded]
        if self.supabase:
            # As `supabase db dump` does: naming the extensions to dump (plpgsql, built in, when none is in
            # scope) also leaves out the platform's event triggers, casts and database-wide default
            # privileges, which belong to supabase_admin and which the postgres role cannot restore.
            # Publications and subscriptions belong to the realtime service.
            args += [f"--extension={quote_ident(e)}" for e in (self.extensions or ["plpgsql"])]
            args += ["--no-publications", "--no-subscriptions"]
        elif tools_major >= 17:
            args += [f"--exclude-extension={quote_ident(e)}" for e in self.excluded_extensions]
        return args

    def to_meta(self) -> dict:
        return {"mode": self.mode, "excluded": list(self.excluded),
                "excluded_extensions": list(self.excluded_extensions), "supabase": self.supabase,
                "owned_by_others": dict(self.owned_by_others)}

    @classmethod
    def of_snapshot(cls, snap) -> Scope:
        return cls.from_meta(snap.get("schemas") or [], snap.get("scope"))

    @classmethod
    def from_meta(cls, schemas: list[str], data: dict | None) -> Scope:
        data = data or {}
        return cls(mode=str(data.get("mode", "only")), schemas=list(schemas or []),
                   excluded=list(data.get("excluded") or []),
                   excluded_extensions=list(data.get("excluded_extensions") or []),
                   supabase=bool(data.get("supabase", False)),
                   owned_by_others=dict(data.get("owned_by_others") or {}))

    def left_out(self) -> list[str]:
        """Why the excluded schemas are out of the scope, grouped, for ``show``:
        "auth, storage (managed by Supabase)", "x (owned by supabase_admin)"."""
        groups: dict[str, list[str]] = {}
        for name in self.excluded:
            if name in self.owned_by_others:
                why = f"owned by {self.owned_by_others[name]}"
            elif self.supabase and is_managed(name):
                why = "managed by Supabase"
            else:
                why = "not usable by this role"
            groups.setdefault(why, []).append(name)
        return [f"{', '.join(names)} ({why})" for why, names in groups.items()]


async def resolve_scope(con: asyncpg.Connection, supabase: bool, only: list[str] | None) -> Scope:
    rows = await con.fetch(
        "SELECT nspname, has_schema_privilege(oid, 'USAGE') AS usable, pg_get_userbyid(nspowner) AS owner, "
        "pg_has_role(nspowner, 'USAGE') AS ours FROM pg_namespace ORDER BY nspname")
    rows = [r for r in rows if not SYSTEM_SCHEMA_RE.match(r["nspname"])]
    names = {r["nspname"]: r["usable"] for r in rows}
    if only:
        if missing := [s for s in only if s not in names]:
            raise BadInput(f"Schema {', '.join(missing)} does not exist in this database.",
                           f"Choose from: {', '.join(sorted(names))}.")
        return Scope(mode="only", schemas=sorted(only), supabase=supabase)
    # On Supabase, a schema owned by a role we cannot act as is the platform's (supabase_admin's), named
    # on our list or not: a later platform migration adds schemas we cannot know of.
    others = {r["nspname"]: r["owner"] for r in rows
              if supabase and not r["ours"] and not is_managed(r["nspname"]) and r["nspname"] != "public"}
    excluded = sorted(n for n, usable in names.items()
                      if (supabase and is_managed(n)) or not usable or n in others)
    schemas = sorted(n for n in names if n not in excluded)
    ext = await con.fetch(
        "SELECT e.extname, n.nspname = ANY($1::text[]) AS outside FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1", excluded)
    return Scope(mode="all-except", schemas=schemas, excluded=excluded,
                 excluded_extensions=[r["extname"] for r in ext if r["outside"]],
                 extensions=[r["extname"] for r in ext if not r["outside"]], supabase=supabase,
                 owned_by_others=others)


async def current_scope_schemas(con: asyncpg.Connection, scope: Scope) -> list[str]:
    """The schemas a restore of ``scope`` must replace, as the database is now (new schemas included). On
    Supabase a schema made since by a role we cannot act as (a later platform migration) is the
    platform's, not ours: it is left alone, as a snapshot taken now would leave it out."""
    rows = await con.fetch("SELECT nspname, pg_has_role(nspowner, 'USAGE') AS ours FROM pg_namespace ORDER BY 1")
    present = [r["nspname"] for r in rows if not SYSTEM_SCHEMA_RE.match(r["nspname"])
               and (r["ours"] or not scope.supabase or r["nspname"] in scope.schemas)]
    if scope.mode == "only":
        return [s for s in present if s in scope.schemas]
    return [s for s in present if s not in scope.excluded]


async def user_tables(con: asyncpg.Connection, schemas: list[str], relkinds: list[str]) -> list[asyncpg.Record]:
    """The scope's relations of ``relkinds`` (``name``: schema.table, ``quoted`` for SQL, the planner's row
    ``estimate``), in name order; extension-owned ones excluded, as pg_dump skips them."""
    return await con.fetch(
        """SELECT n.nspname || '.' || c.relname AS name, format('%I.%I', n.nspname, c.relname) AS quoted,
                  c.reltuples::bigint AS estimate
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind::text = ANY($2::text[]) AND n.nspname = ANY($1::text[])
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                             AND d.deptype = 'e')
           ORDER BY n.nspname, c.relname""", schemas, relkinds)


async def analyze(con: asyncpg.Connection, schemas: list[str], conn: ConnInfo) -> tuple[int, int]:
    """ANALYZE the scope's tables that have no column statistics (after a restore, those its snapshot did
    not carry: the planner and our progress estimates need them). With two tables or more to analyze, a
    second session to ``conn`` takes every other one, largest first, so that two backends analyze on two
    cores; without it, ``con`` does all. Returns how many were analyzed and how many had statistics."""
    have = {r["name"] for r in await con.fetch(
        "SELECT DISTINCT schemaname || '.' || tablename AS name FROM pg_stats WHERE schemaname = ANY($1::text[])",
        schemas)}
    tables = await user_tables(con, schemas, ["r", "p", "m"])
    rows = sorted((r for r in tables if r["name"] not in have), key=lambda r: r["estimate"], reverse=True)
    second = None
    if len(rows) > 1:
        with contextlib.suppress(DbsageError):
            second = await connect(conn)
    cons = [con, second] if second else [con]
    try:
        await asyncio.gather(*(c.execute("ANALYZE " + ", ".join(r["quoted"] for r in rows[i::len(cons)]))
                               for i, c in enumerate(cons) if rows[i::len(cons)]))
    finally:
        if second:
            await close_quietly(second)
    return len(rows), len(tables) - len(rows)


async def tables_count(con: asyncpg.Connection, schemas: list[str]) -> int:
    return len(await user_tables(con, schemas, ["r", "p"]))


async def estimate_dump_bytes(con: asyncpg.Connection, schemas: list[str]) -> int | None:
    """A rough size of the text dump, for progress: heap+TOAST pages of the tables (indexes are not dumped).
    Read from pg_class statistics, not pg_table_size(), which would wait behind other sessions' locks."""
    val = await con.fetchval(
        """SELECT sum((c.relpages::bigint + coalesce(t.relpages, 0)) * current_setting('block_size')::bigint)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
           WHERE c.relkind = 'r' AND n.nspname = ANY($1::text[])""", schemas)
    return int(val) if val else None


