"""The SQL that clears a snapshot's scope before a ``pg_dump --clean`` file is replayed into it: the restore is
only exact if the scope is emptied first (objects made after the snapshot would survive otherwise) without
touching anything outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.errors import OperationFailed
from services.server import dependents
from services.server.catalog import GRANT_SQL, GRANTEE_SQL, quote_ident

# Object kinds as pg_identify_object names them -> the DROP command for them. Order matters: extensions
# first (their members cannot be dropped alone), then relations, then what relations use.
_DROP_ORDER = [
    ("extension", "EXTENSION"), ("event trigger", "EVENT TRIGGER"),
    ("materialized view", "MATERIALIZED VIEW"), ("view", "VIEW"), ("foreign table", "FOREIGN TABLE"),
    ("table", "TABLE"), ("sequence", "SEQUENCE"), ("index", "INDEX"),
    ("function", "ROUTINE"), ("procedure", "ROUTINE"), ("aggregate", "ROUTINE"),
    ("operator class", "OPERATOR CLASS"), ("operator family", "OPERATOR FAMILY"), ("operator", "OPERATOR"),
    ("statistics object", "STATISTICS"), ("text search configuration", "TEXT SEARCH CONFIGURATION"),
    ("text search dictionary", "TEXT SEARCH DICTIONARY"), ("text search parser", "TEXT SEARCH PARSER"),
    ("text search template", "TEXT SEARCH TEMPLATE"), ("collation", "COLLATION"), ("conversion", "CONVERSION"),
    ("composite type", "TYPE"), ("domain", "DOMAIN"), ("type", "TYPE"),
]
_DROP_RANK = {kind: i for i, (kind, _) in enumerate(_DROP_ORDER)}

@dataclass
class ClearPlan:
    """SQL to run, inside the restore's transaction, before (``prelude``) and after (``postlude``) the dump."""

    prelude: list[str]
    postlude: list[str]
    preserved: list[str]  # descriptions of outside objects dropped and re-created around the replay


async def plan_clear(con: asyncpg.Connection, schemas: list[str], dumps_everything: bool,
                     recorded: list[str] | None = None) -> ClearPlan:
    """Empty ``schemas`` so that replaying a ``--clean`` dump yields exactly the dump's state.

    * Schemas other than ``public`` are dropped with CASCADE (the dump re-creates them).
    * ``public`` cannot be dropped (pg_dump never re-creates it; its initial privileges would be lost), so its
      objects are dropped one by one, its ACL reset to what pg_dump assumes, its default ACLs cleared.
    * Objects outside the scope that depend on it (``services.server.dependents``) are dropped first. A snapshot
      that recorded them (``recorded``: their descriptions) re-creates them from its appendix; for an older
      snapshot they are put back after the replay as they are now. Dependents that cannot be re-created (a
      view or a column type outside the scope) stop the restore before it starts.
    * Publications, when the dump has them all (``dumps_everything``): every one is dropped, as the dump's own
      ``--clean`` drops those it re-creates, so that one made after the snapshot is gone too. (Subscriptions
      are left alone: dropping one drops its slot on the publisher.)
    """
    prelude = [f"DROP PUBLICATION {r['name']};" for r in await con.fetch(
        "SELECT quote_ident(pubname) AS name FROM pg_publication ORDER BY pubname")] if dumps_everything else []
    aside, postlude, preserved = await _set_aside(con, schemas, dumps_everything, recorded)
    prelude += aside
    for schema in schemas:
        prelude += await _empty_public(con) if schema == "public" else [f"DROP SCHEMA {quote_ident(schema)} CASCADE;"]
    acl_prelude, acl_postlude = await _reset_default_acls(con, schemas, dumps_everything)
    return ClearPlan(prelude=prelude + acl_prelude, postlude=postlude + acl_postlude, preserved=preserved)


async def _set_aside(con: asyncpg.Connection, schemas: list[str], dumped_publications: bool,
                     recorded: list[str] | None) -> tuple[list[str], list[str], list[str]]:
    """The outside dependents: dropped first (prelude); re-created by the snapshot's appendix when it
    ``recorded`` them, else put back as they are now (postlude). Returns (prelude, postlude, preserved)."""
    found, blocked = await dependents.read(con, schemas)
    if blocked:
        raise dependents.blocked_error(blocked)
    prelude = [stmt for dep in found for stmt in dep.drop]
    if recorded is not None:
        return prelude, [], list(recorded)
    if not dumped_publications:
        found += await dependents.publication_members(con, schemas, if_present=True)
    return prelude, [stmt for dep in found for stmt in dep.create], [dep.what for dep in found]


async def _empty_public(con: asyncpg.Connection) -> list[str]:
    rows = await con.fetch(
        """SELECT (pg_identify_object(d.classid, d.objid, 0)).type AS kind,
                  (pg_identify_object(d.classid, d.objid, 0)).identity AS ident
           FROM pg_depend d
           WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = 'public'::regnamespace
             AND d.deptype = 'n'
             AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid
                             AND e.deptype = 'e')""")
    if unknown := sorted({r["kind"] for r in rows if r["kind"] not in _DROP_RANK}):
        raise OperationFailed(f"Cannot clear schema public: it holds objects of kind {', '.join(unknown)}.",
                              "Please report this; restore by hand with psql meanwhile.")
    keyword = dict(_DROP_ORDER)
    sql = [f"DROP {keyword[r['kind']]} IF EXISTS {r['ident']} CASCADE;"
           for r in sorted(rows, key=lambda r: (_DROP_RANK[r["kind"]], r["ident"]))]
    # Reset the schema's ACL to the state pg_dump measures its GRANT/REVOKE commands from: the initial
    # privileges initdb recorded (pg_init_privs), with pg_database_owner standing for the owner.
    acl = await con.fetchrow(
        f"""SELECT ARRAY(SELECT DISTINCT {GRANTEE_SQL}
                         FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a) AS grantees,
                   ARRAY(SELECT replace({GRANT_SQL}, ' TO pg_database_owner',
                                        ' TO ' || quote_ident(n.nspowner::regrole::text))
                         FROM aclexplode(coalesce(
                              (SELECT initprivs FROM pg_init_privs WHERE classoid = 'pg_namespace'::regclass
                               AND objoid = n.oid AND objsubid = 0),
                              acldefault('n', n.nspowner))) a) AS grants
            FROM pg_namespace n WHERE n.nspname = 'public'""")
    # pg_dump omits public's comment when it is initdb's; it emits COMMENT ... IS NULL when there is none.
    sql.append("COMMENT ON SCHEMA public IS 'standard public schema';")
    sql += [f"REVOKE ALL ON SCHEMA public FROM {g} CASCADE;" for g in acl["grantees"]]
    return sql + [f"GRANT {g.replace(' TO ', ' ON SCHEMA public TO ', 1)};" for g in acl["grants"]]


_DEFACL_KIND = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS",
                "L": "LARGE OBJECTS"}


async def _reset_default_acls(con: asyncpg.Connection, schemas: list[str],
                              dumped_global: bool) -> tuple[list[str], list[str]]:
    """ALTER DEFAULT PRIVILEGES commands (prelude, postlude) around the replay. Default privileges apply to every
    object the replay creates, but pg_dump writes each object's grants relative to the built-in defaults and its
    own default-privilege commands last: so all are brought back to the built-in defaults first. Entries of
    dropped schemas vanish with them; public's are reset here and re-created by the dump. Database-wide entries
    are re-created by the dump when it holds them (``dumped_global``), else put back as they were in the
    postlude. Only roles we may act for are touched."""
    # (acldefault's entries never carry a grant option: GRANT_SQL reads them as they are.)
    rows = await con.fetch(
        f"""SELECT quote_ident(d.defaclrole::regrole::text) AS role, d.defaclobjtype::text AS kind,
                  CASE WHEN d.defaclnamespace = 0 THEN NULL ELSE d.defaclnamespace::regnamespace::text END AS nsp,
                  ARRAY(SELECT DISTINCT {GRANTEE_SQL} FROM aclexplode(d.defaclacl) a) AS grantees,
                  ARRAY(SELECT {GRANT_SQL} FROM aclexplode(d.defaclacl) a) AS current,
                  CASE WHEN d.defaclnamespace = 0 THEN ARRAY(
                        SELECT {GRANT_SQL} FROM aclexplode(acldefault(
                            CASE d.defaclobjtype WHEN 'S' THEN 's' ELSE d.defaclobjtype END, d.defaclrole)) a)
                       ELSE '{{}}' END AS defaults
           FROM pg_default_acl d
           WHERE pg_has_role(d.defaclrole, 'USAGE')
             AND (d.defaclnamespace = 0 OR d.defaclnamespace::regnamespace::text = 'public'
                  AND 'public' = ANY($1::text[]))
           ORDER BY 1, 2, 3""", schemas)
    prelude: list[str] = []
    postlude: list[str] = []
    for r in rows:
        kind = _DEFACL_KIND.get(r["kind"])
        if not kind:
            continue
        where = f" IN SCHEMA {r['nsp']}" if r["nsp"] else ""
        head = f"ALTER DEFAULT PRIVILEGES FOR ROLE {r['role']}{where}"
        if r["grantees"]:
            prelude.append(f"{head} REVOKE ALL ON {kind} FROM {', '.join(r['grantees'])};")
        prelude += [f"{head} GRANT {grant.replace(' TO ', f' ON {kind} TO ', 1)};" for grant in r["defaults"]]
        if r["nsp"] is None and not dumped_global:
            if default_grantees := sorted({g.partition(" TO ")[2] for g in r["defaults"]}):
                postlude.append(f"{head} REVOKE ALL ON {kind} FROM {', '.join(default_grantees)};")
            postlude += [f"{head} GRANT {grant.replace(' TO ', f' ON {kind} TO ', 1)};" for grant in r["current"]]
    return prelude, postlude

