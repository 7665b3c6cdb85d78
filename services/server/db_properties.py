"""Database-level properties (owner, privileges, settings, comment, limits) as SQL, to carry them from one
database to another: they live in shared catalogs keyed by the database's OID, so a file-level copy of a
database (a clone snapshot and its restore) does not bring them along."""

from __future__ import annotations

import re

import asyncpg

from services.server.catalog import GRANT_SQL, quote_ident, quote_literal

#: Settings whose values are lists of identifiers (pg_dump's variable_is_guc_list_quote).
_GUC_LIST_QUOTE = frozenset({"local_preload_libraries", "search_path", "session_preload_libraries",
                             "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"})
_GUC_ITEM = re.compile(r'"((?:[^"]|"")*)"|[^\s,]+')


def split_guc_list(value: str) -> list[str]:
    """A list setting as stored in pg_db_role_setting (``"$user", public``) -> its elements
    (PostgreSQL's SplitGUCList: double-quoted or bare, comma-separated; no case folding)."""
    return [m[1].replace('""', '"') if m[1] is not None else m[0] for m in _GUC_ITEM.finditer(value)]


def set_command(database: str, role: str | None, item: str) -> str:
    """The ALTER [ROLE r IN] DATABASE ... SET that re-creates one pg_db_role_setting entry ``name=value``."""
    name, _, value = item.partition("=")
    if name.lower() in _GUC_LIST_QUOTE:
        parts = split_guc_list(value)
        rhs = ", ".join(quote_literal(p) for p in parts) if parts else "''"
    else:
        rhs = quote_literal(value)
    head = f"ALTER ROLE {role} IN DATABASE" if role else "ALTER DATABASE"
    return f"{head} {quote_ident(database)} SET {quote_ident(name)} = {rhs}"


async def carry_over_commands(con: asyncpg.Connection, source: str, dest: str) -> list[str]:
    """SQL that gives database ``dest`` the database-level properties of ``source``: owner, privileges,
    per-database and per-role-in-database settings, comment, connection limit, ALLOW_CONNECTIONS and
    IS_TEMPLATE (not security labels nor the tablespace)."""
    d = await con.fetchrow(
        f"""SELECT oid, datdba::regrole::text AS owner, datconnlimit, datallowconn, datistemplate,
                   datacl IS NOT NULL AS has_acl, shobj_description(oid, 'pg_database') AS comment,
                   ARRAY(SELECT {GRANT_SQL} FROM aclexplode(datacl) WITH ORDINALITY a ORDER BY a.ordinality) AS grants
            FROM pg_database WHERE datname = $1""", source)
    q = quote_ident(dest)
    sql = [f"ALTER DATABASE {q} OWNER TO {d['owner']}"]
    if d["has_acl"]:
        sql.append(f"REVOKE ALL ON DATABASE {q} FROM PUBLIC, {d['owner']} CASCADE")
        sql += [f"GRANT {g.replace(' TO ', f' ON DATABASE {q} TO ', 1)}" for g in d["grants"]]
    for r in await con.fetch(
            """SELECT CASE WHEN setrole = 0 THEN NULL ELSE setrole::regrole::text END AS role, setconfig
               FROM pg_db_role_setting WHERE setdatabase = $1 ORDER BY setrole""", d["oid"]):
        sql += [set_command(dest, r["role"], item) for item in r["setconfig"] or []]
    if d["comment"] is not None:
        sql.append(f"COMMENT ON DATABASE {q} IS {quote_literal(d['comment'])}")
    sql.append(f"ALTER DATABASE {q} WITH CONNECTION LIMIT {int(d['datconnlimit'])} "
               f"ALLOW_CONNECTIONS {str(d['datallowconn']).lower()} IS_TEMPLATE {str(d['datistemplate']).lower()}")
    return sql
