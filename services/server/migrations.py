"""The migration history a database carries: the newest applied migration of each tool whose history table
is present (Supabase CLI, Alembic, Django, Prisma), and the history rows newer than a recorded head.

A guarded snapshot records the heads (``services.guard``); a restore's preview lists what it will undo
(``services.server.preview``). Each history table is found by name in any schema the role can see, so a
project that keeps Alembic's table outside ``public`` is read too.
"""

from __future__ import annotations

import contextlib

import asyncpg

from services.server.catalog import HISTORY_SCHEMA, SYSTEM_SCHEMA_RE, quote_ident

#: tool -> (history table name, the command that applies what is pending).
TOOLS = {
    "supabase": ("schema_migrations", "supabase migration up (local) or supabase db push (linked project)"),
    "alembic": ("alembic_version", "alembic upgrade head"),
    "django": ("django_migrations", "python manage.py migrate"),
    "prisma": ("_prisma_migrations", "npx prisma migrate deploy"),
}

#: Per tool: the newest applied row as (version, name), and the rows applied after a given version.
#: ``to_jsonb(m)`` reads a column that older versions of a tool did not have as NULL instead of failing.
_HEAD = {
    "supabase": "SELECT version::text, to_jsonb(m) ->> 'name' FROM {t} m ORDER BY version DESC LIMIT 1",
    "alembic": "SELECT string_agg(version_num, ',' ORDER BY version_num), NULL FROM {t}",
    "django": "SELECT id::text, app || '.' || name FROM {t} ORDER BY id DESC LIMIT 1",
    "prisma": "SELECT migration_name, NULL FROM {t} WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL "
              "ORDER BY migration_name DESC LIMIT 1",
}
_AFTER = {
    "supabase": "SELECT version::text, to_jsonb(m) ->> 'name' FROM {t} m WHERE version::text > $1 ORDER BY 1",
    "django": "SELECT id::text, app || '.' || name FROM {t} WHERE id > $1::bigint ORDER BY id",
    "prisma": "SELECT migration_name, NULL FROM {t} WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL "
              "AND migration_name > $1 ORDER BY 1",
}

#: A version below every real one: with no recorded head, every row is newer.
_BOTTOM = {"supabase": "", "django": "-1", "prisma": ""}


async def history_tables(con: asyncpg.Connection) -> dict[str, str]:
    """tool -> the quoted ``schema.table`` of its history table, for each tool whose table exists (the
    Supabase CLI's only in ``supabase_migrations``; the first schema in name order otherwise)."""
    rows = await con.fetch(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[]) AND has_table_privilege(c.oid, 'SELECT') "
        "ORDER BY n.nspname", [table for table, _ in TOOLS.values()])
    found: dict[str, str] = {}
    for r in rows:
        tool = next(tool for tool, (table, _) in TOOLS.items() if table == r["relname"])
        if not SYSTEM_SCHEMA_RE.match(r["nspname"]) and (tool != "supabase" or r["nspname"] == HISTORY_SCHEMA):
            found.setdefault(tool, f"{quote_ident(r['nspname'])}.{quote_ident(r['relname'])}")
    return found


def _head(row) -> dict | None:
    return {"version": row[0], "name": row[1]} if row and row[0] is not None else None


async def heads(con: asyncpg.Connection) -> dict[str, dict | None]:
    """tool -> its newest applied migration ``{"version", "name"}`` (None: the table is there, empty), for
    each tool whose history table exists. A table that cannot be read as expected is left out."""
    out: dict[str, dict | None] = {}
    for tool, table in (await history_tables(con)).items():
        with contextlib.suppress(asyncpg.PostgresError):
            out[tool] = _head(await con.fetchrow(_HEAD[tool].format(t=table)))
    return out


async def applied_after(con: asyncpg.Connection, tool: str, head: dict | None) -> list[dict] | None:
    """The live history rows of ``tool`` newer than ``head`` (every row when ``head`` is None): what a
    restore to a snapshot with that head undoes. For Alembic, which keeps only its current revision, the
    current revision when it differs. None when the table is gone or unreadable."""
    table = (await history_tables(con)).get(tool)
    if table is None:
        return None
    try:
        if tool == "alembic":
            now = _head(await con.fetchrow(_HEAD["alembic"].format(t=table)))
            return [now] if now and now != head else []
        rows = await con.fetch(_AFTER[tool].format(t=table), head["version"] if head else _BOTTOM[tool])
    except asyncpg.PostgresError:
        return None
    return [_head(r) for r in rows]


def text(head: dict | None) -> str:
    """``20261102090000 messages``, or ``none`` for an empty history."""
    return " ".join(str(x) for x in (head.get("version"), head.get("name")) if x) if head else "none"
