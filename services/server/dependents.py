"""Objects outside a snapshot's scope that depend on objects inside it, and what a restore needs to own.

On Supabase the sign-up trigger on ``auth.users`` calls ``public.handle_new_user()``, storage policies on
``storage.objects`` call public functions, ``supabase_realtime`` publishes public tables. pg_dump leaves them
out (their tables are not in the scope), yet a restore that drops and re-creates the scope drops them too. So
they are read **when the snapshot is taken**, written after pg_dump's output as the file's appendix (plain SQL,
covered by the sha256, each object dropped if it exists and re-created), and re-created from there by the
restore, even when a migration has destroyed them since (``DROP FUNCTION ... CASCADE``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from services.errors import OperationFailed
from services.server.catalog import quote_literal
from services.snapshots.scanner import APPENDIX_BEGIN, APPENDIX_END

_OBJ_NS = """
    obj_ns(cls, oid, ns) AS (
        SELECT 'pg_class'::regclass, oid, relnamespace FROM pg_class
        UNION ALL SELECT 'pg_proc'::regclass, oid, pronamespace FROM pg_proc
        UNION ALL SELECT 'pg_type'::regclass, oid, typnamespace FROM pg_type
        UNION ALL SELECT 'pg_constraint'::regclass, oid, connamespace FROM pg_constraint
        UNION ALL SELECT 'pg_operator'::regclass, oid, oprnamespace FROM pg_operator
        UNION ALL SELECT 'pg_collation'::regclass, oid, collnamespace FROM pg_collation
        UNION ALL SELECT 'pg_trigger'::regclass, t.oid, c.relnamespace
                  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        UNION ALL SELECT 'pg_policy'::regclass, p.oid, c.relnamespace
                  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        UNION ALL SELECT 'pg_attrdef'::regclass, a.oid, c.relnamespace
                  FROM pg_attrdef a JOIN pg_class c ON c.oid = a.adrelid
        UNION ALL SELECT 'pg_rewrite'::regclass, r.oid, c.relnamespace
                  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
        UNION ALL SELECT 'pg_namespace'::regclass, oid, oid FROM pg_namespace
    )"""

_DEPENDENTS = f"""WITH nsp AS (SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[])), {_OBJ_NS}
    SELECT DISTINCT ON (d.classid, d.objid) d.classid::regclass::text AS cls, d.objid,
           pg_describe_object(d.classid, d.objid, d.objsubid) AS what,
           pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) AS needs
    FROM pg_depend d
    JOIN obj_ns ref ON ref.cls = d.refclassid AND ref.oid = d.refobjid AND ref.ns IN (SELECT oid FROM nsp)
    JOIN obj_ns dep ON dep.cls = d.classid AND dep.oid = d.objid AND dep.ns NOT IN (SELECT oid FROM nsp)
    WHERE d.deptype IN ('n', 'a') AND dep.ns <> 'pg_catalog'::regnamespace
    ORDER BY d.classid, d.objid"""


@dataclass
class Dependent:
    """One outside object: how to drop it before a replay and how to re-create it exactly after."""

    what: str  # e.g. "trigger on_auth_user_created on table auth.users (uses function public.handle_new_user())"
    owner_of: str  # what the role must own to drop and re-create it: "table auth.users", "publication p"
    drop: list[str]
    create: list[str]


async def _trigger(con: asyncpg.Connection, oid: int) -> tuple[str, list[str], list[str]]:
    t = await con.fetchrow(
        """SELECT pg_get_triggerdef(t.oid) AS def, t.tgenabled::text AS en, quote_ident(t.tgname) AS name,
                  t.tgrelid::regclass::text AS tbl, obj_description(t.oid, 'pg_trigger') AS cmt
           FROM pg_trigger t WHERE t.oid = $1""", oid)
    create = [f"DROP TRIGGER IF EXISTS {t['name']} ON {t['tbl']};", t["def"] + ";"]
    if state := {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(t["en"]):
        create.append(f"ALTER TABLE {t['tbl']} {state} TRIGGER {t['name']};")
    if t["cmt"] is not None:
        create.append(f"COMMENT ON TRIGGER {t['name']} ON {t['tbl']} IS {quote_literal(t['cmt'])};")
    return t["tbl"], [f"DROP TRIGGER {t['name']} ON {t['tbl']};"], create


async def _constraint(con: asyncpg.Connection, oid: int) -> tuple[str, list[str], list[str]] | None:
    c = await con.fetchrow(
        """SELECT quote_ident(conname) AS name, conrelid::regclass::text AS tbl,
                  pg_get_constraintdef(oid) AS def, contype::text AS type
           FROM pg_constraint WHERE oid = $1""", oid)
    if c["type"] != "f" or c["tbl"] == "-":
        return None
    drop = f"ALTER TABLE {c['tbl']} DROP CONSTRAINT {c['name']};"
    return c["tbl"], [drop], [drop.replace("DROP CONSTRAINT", "DROP CONSTRAINT IF EXISTS"),
                              f"ALTER TABLE {c['tbl']} ADD CONSTRAINT {c['name']} {c['def']};"]


async def _policy(con: asyncpg.Connection, oid: int) -> tuple[str, list[str], list[str]]:
    p = await con.fetchrow(
        """SELECT quote_ident(pol.polname) AS name, pol.polrelid::regclass::text AS tbl,
                  pol.polpermissive AS permissive, pol.polcmd::text AS cmd,
                  CASE WHEN pol.polroles = '{0}' THEN ARRAY['PUBLIC']
                       ELSE ARRAY(SELECT quote_ident(rolname) FROM pg_roles
                                  WHERE oid = ANY(pol.polroles) ORDER BY rolname) END AS roles,
                  pg_get_expr(pol.polqual, pol.polrelid) AS qual,
                  pg_get_expr(pol.polwithcheck, pol.polrelid) AS chk, obj_description(pol.oid, 'pg_policy') AS cmt
           FROM pg_policy pol WHERE pol.oid = $1""", oid)
    cmd = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}[p["cmd"]]
    sql = (f"CREATE POLICY {p['name']} ON {p['tbl']} AS {'PERMISSIVE' if p['permissive'] else 'RESTRICTIVE'}"
           f" FOR {cmd} TO {', '.join(p['roles'])}")
    if p["qual"]:
        sql += f" USING ({p['qual']})"
    if p["chk"]:
        sql += f" WITH CHECK ({p['chk']})"
    create = [f"DROP POLICY IF EXISTS {p['name']} ON {p['tbl']};", sql + ";"]
    if p["cmt"] is not None:
        create.append(f"COMMENT ON POLICY {p['name']} ON {p['tbl']} IS {quote_literal(p['cmt'])};")
    return p["tbl"], [f"DROP POLICY {p['name']} ON {p['tbl']};"], create


async def _default(con: asyncpg.Connection, oid: int) -> tuple[str, list[str], list[str]] | None:
    a = await con.fetchrow(
        """SELECT ad.adrelid::regclass::text AS tbl, quote_ident(att.attname) AS col,
                  pg_get_expr(ad.adbin, ad.adrelid) AS expr, att.attgenerated::text AS gen
           FROM pg_attrdef ad JOIN pg_attribute att ON att.attrelid = ad.adrelid AND att.attnum = ad.adnum
           WHERE ad.oid = $1""", oid)
    if a["gen"]:
        return None
    head = f"ALTER TABLE {a['tbl']} ALTER COLUMN {a['col']}"
    return a["tbl"], [f"{head} DROP DEFAULT;"], [f"{head} SET DEFAULT {a['expr']};"]


_READERS = {"pg_trigger": _trigger, "pg_constraint": _constraint, "pg_policy": _policy, "pg_attrdef": _default}


async def read(con: asyncpg.Connection, schemas: list[str]) -> tuple[list[Dependent], list[str]]:
    """The outside objects that depend on ``schemas``, and descriptions of those that cannot be dropped
    and re-created around a replay (a view or a column type outside the scope)."""
    found: list[Dependent] = []
    blocked: list[str] = []
    for d in await con.fetch(_DEPENDENTS, schemas):
        reader = _READERS.get(d["cls"])
        got = await reader(con, d["objid"]) if reader else None
        if got is None:
            blocked.append(f"{d['what']} lies outside the snapshot's scope but depends on {d['needs']}")
            continue
        table, drop, create = got
        found.append(Dependent(f"{d['what']} (uses {d['needs']})", f"table {table}", drop, create))
    return found, blocked


async def publication_members(con: asyncpg.Connection, schemas: list[str], *,
                              if_present: bool = False) -> list[Dependent]:
    """Memberships of the scope's tables (with column lists and row filters) and schemas in publications. A dump
    without publications (Supabase's: supabase_realtime is the platform's) has none, and dropping a table takes
    it out of every publication: realtime would stop for it, silently. (``public`` is emptied, never dropped:
    its FOR TABLES IN SCHEMA entries stay.) ``if_present``: each is re-added only if its table or schema exists
    after the replay (memberships read at restore time include tables made since the snapshot)."""
    new = con.get_server_version().major >= 15  # asyncpg read it at connect: no query
    rows = await con.fetch(
        f"""SELECT quote_ident(p.pubname) AS pub, p.pubname, format('%I.%I', n.nspname, c.relname) AS tbl,
                   {"pg_get_expr(r.prqual, r.prrelid)" if new else "NULL::text"} AS qual,
                   {"(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a "
                    "WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs))" if new else "NULL::text"} AS cols
            FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
            JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::text[]) ORDER BY 2, 3""", schemas)
    found = []
    for r in rows:
        target = r["tbl"] + (f" ({r['cols']})" if r["cols"] else "") + (f" WHERE ({r['qual']})" if r["qual"] else "")
        found.append(_member(r, f"table {r['tbl']}", f"ADD TABLE ONLY {target}",
                             f"to_regclass({quote_literal(r['tbl'])})" if if_present else None))
    if new:
        for r in await con.fetch(
                """SELECT quote_ident(p.pubname) AS pub, p.pubname, n.nspname, quote_ident(n.nspname) AS nsp
                   FROM pg_publication_namespace pn
                   JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid
                   WHERE n.nspname = ANY($1::text[]) AND n.nspname <> 'public' ORDER BY 2, 3""", schemas):
            found.append(_member(r, f"schema {r['nspname']}", f"ADD TABLES IN SCHEMA {r['nsp']}",
                                 f"to_regnamespace({quote_literal(r['nsp'])})" if if_present else None))
    return found


def _member(r, what: str, action: str, exists: str | None) -> Dependent:
    """``what`` put back into publication ``r["pub"]``; with ``exists``, only if that expression is not null."""
    sql = f"ALTER PUBLICATION {r['pub']} {action};"
    if exists:
        sql = f"DO $dbsage$ BEGIN IF {exists} IS NOT NULL THEN {sql} END IF; END $dbsage$;"
    return Dependent(f"{what} in publication {r['pubname']}", f"publication {r['pubname']}", [], [sql])


def appendix(found: list[Dependent]) -> bytes:
    """The SQL written after pg_dump's trailer: each object as it is now, dropped first if it exists."""
    lines = ["", "--", (APPENDIX_BEGIN + b" objects outside this snapshot's scope that depend on it, as they were"
                        b" when it was taken.").decode(),
             "-- A restore re-creates them after the dump's own objects; each is dropped first if it exists.", "--",
             "", "SET search_path = pg_catalog;", ""]
    for dep in found:
        lines += [f"-- {dep.what}", *dep.create, ""]
    lines += ["--", APPENDIX_END.decode(), "--", ""]
    return "\n".join(lines).encode()


def blocked_error(blocked: list[str]) -> OperationFailed:
    more = f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else ""
    return OperationFailed(f"Cannot restore: {blocked[0]}{more}.",
                           "Drop it first or snapshot its schema too (--schema), then restore again.")


_NOT_OURS = """
    WITH nsp AS (SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[])),
    owned(cls, oid, kind, name, owner) AS (
        SELECT 'pg_namespace'::regclass, n.oid, 'schema', quote_ident(n.nspname), n.nspowner
        FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM nsp)
        UNION ALL SELECT 'pg_class'::regclass, c.oid, CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view'
                     WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END,
                     c.oid::regclass::text, c.relowner
        FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM nsp) AND c.relkind IN ('r','p','v','m','S','f')
        UNION ALL SELECT 'pg_proc'::regclass, p.oid, 'function', p.oid::regprocedure::text, p.proowner
        FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM nsp)
        UNION ALL SELECT 'pg_type'::regclass, t.oid, 'type', t.oid::regtype::text, t.typowner
        FROM pg_type t WHERE t.typnamespace IN (SELECT oid FROM nsp) AND t.typtype IN ('e', 'd', 'r', 'm')
    )
    SELECT o.kind, o.name, pg_get_userbyid(o.owner) AS owner FROM owned o
    WHERE NOT pg_has_role(o.owner, 'USAGE')
      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = o.cls AND e.objid = o.oid AND e.deptype = 'e')
    ORDER BY 1, 2"""


async def check_ownership(con: asyncpg.Connection, schemas: list[str], outside: list[str]) -> None:
    """Refuse, before anything is touched, a restore the connecting role cannot carry out: an object in the scope
    whose owner is a role it does not belong to, or a table or publication outside it whose triggers, policies
    or members it must drop and re-create (``outside``: "table X" / "publication P"). Supabase's supautils
    grants (``drop_trigger_grants``, ``policy_grants``) count as ownership for the tables they name."""
    me = await con.fetchval("SELECT current_user")
    row = await con.fetchrow(_NOT_OURS, schemas)
    if row is not None:
        raise OperationFailed(
            f"Cannot restore as {me}: {row['kind']} {row['name']} belongs to {row['owner']}, a role {me} is "
            "not a member of, so the restore could not drop and re-create it.",
            f"Have {row['owner']} drop it or hand it over (ALTER {row['kind'].upper()} {row['name']} OWNER TO "
            f"{me}), or restore as a member of {row['owner']}.")
    lost = await con.fetchrow(
        """SELECT d.defaclnamespace::regnamespace::text AS nsp, pg_get_userbyid(d.defaclrole) AS role
           FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
           WHERE n.nspname = ANY($1::text[]) AND n.nspname <> 'public' AND NOT pg_has_role(d.defaclrole, 'USAGE')
           ORDER BY 1, 2 LIMIT 1""", schemas)
    if lost is not None:  # dropping the schema would drop them, and no restore as us could set them again
        raise OperationFailed(
            f"Cannot restore as {me}: schema {lost['nsp']} holds default privileges of {lost['role']}, a role "
            f"{me} is not a member of; replacing the schema would lose them.",
            f"Restore as a member of {lost['role']}, or have {lost['role']} remove them first.")
    grants = await _supautils_grants(con, me)
    for need in sorted(set(outside)):
        kind, _, name = need.partition(" ")
        if kind == "table":
            owner = await con.fetchrow(
                "SELECT pg_get_userbyid(relowner) AS name, pg_has_role(relowner, 'USAGE') AS ours "
                "FROM pg_class WHERE oid = to_regclass($1)", name)
        else:
            owner = await con.fetchrow(
                "SELECT pg_get_userbyid(pubowner) AS name, pg_has_role(pubowner, 'USAGE') AS ours "
                "FROM pg_publication WHERE pubname = $1", name)
        if owner is None or owner["ours"] or name in grants:
            continue  # a table gone since is re-created by nobody: the replay fails and rolls back
        raise OperationFailed(
            f"Cannot restore as {me}: {kind} {name} belongs to {owner['name']}, a role {me} is not a member "
            "of, so the restore could not drop and re-create what the snapshot keeps on it.",
            f"Restore as a member of {owner['name']}, or grant {me} that role for the restore.")


async def _supautils_grants(con: asyncpg.Connection, me: str) -> set[str]:
    """Tables supautils lets ``me`` manage triggers and policies on without owning them (hosted Supabase);
    empty where supautils is not loaded or its settings are not visible."""
    names: set[str] = set()
    for setting in ("supautils.drop_trigger_grants", "supautils.policy_grants"):
        text = await con.fetchval("SELECT current_setting($1, true)", setting)
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get(me), list):
            names |= {str(t) for t in value[me]}
    return names
