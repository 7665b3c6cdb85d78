"""Catalog inspection over asyncpg: server facts, snapshot scope, counts, and the SQL that clears a scope.

The restore of a ``pg_dump --clean`` file is only exact if the target scope is emptied first (objects made
after the snapshot would survive otherwise) without touching anything outside the scope. That knowledge
lives here, next to the catalog queries it depends on.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import asyncpg

from .config import ConnInfo
from .errors import OperationFailed, explain_tool_failure

SYSTEM_SCHEMA_RE = re.compile(r"^(pg_catalog|information_schema|pg_toast.*|pg_temp_.*)$")

#: Schemas that Supabase manages; out of a snapshot's scope by default, as ``supabase db dump`` does.
SUPABASE_MANAGED = (
    "auth", "storage", "extensions", "realtime", "_realtime", "_analytics", "_supavisor",
    "supabase_functions", "supabase_migrations", "graphql", "graphql_public", "pgbouncer", "pgsodium",
    "pgsodium_masks", "vault", "cron", "net", "pgmq", "pgtle", "repack", "dbdev", "etl", "topology", "tiger",
    "tiger_data",
)
SUPABASE_MANAGED_PREFIXES = ("timescaledb_",)


def is_managed(schema: str) -> bool:
    return schema in SUPABASE_MANAGED or schema.startswith(SUPABASE_MANAGED_PREFIXES)


async def connect(conn: ConnInfo) -> asyncpg.Connection:
    """Connect with a bounded timeout; failures become one clear sentence, never a traceback."""
    try:
        con = await asyncio.wait_for(asyncpg.connect(**conn.asyncpg_kwargs()), conn.connect_timeout + 1)
    except TimeoutError:
        raise explain_tool_failure("timeout expired", f"Connecting to {conn.display}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        text = str(exc)
        if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in text:
            text = "Connection refused"
        if isinstance(exc, OSError) and "Name or service not known" in text:
            text = "could not translate host"
        raise explain_tool_failure(text, f"Connecting to {conn.display}") from None
    await con.execute("SET search_path = pg_catalog")
    return con


@dataclass
class ServerInfo:
    version: str  # e.g. "PostgreSQL 18.6"
    version_num: int
    current_user: str
    superuser: bool
    supabase: bool
    supabase_version: str | None
    database: str

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
                  to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS has_migrations""")
    sb_version = None
    if row["has_migrations"]:
        try:
            sb_version = await con.fetchval("SELECT max(version)::text FROM supabase_migrations.schema_migrations")
        except asyncpg.PostgresError:
            sb_version = None
    version = row["v"].split(" ")[0]
    return ServerInfo(version=f"PostgreSQL {version}", version_num=row["n"], current_user=row["u"],
                      superuser=bool(row["su"]), supabase=bool(row["supabase"]), supabase_version=sb_version,
                      database=row["db"])


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

    def pg_dump_args(self, tools_major: int) -> list[str]:
        if self.mode == "only":
            return [f"--schema={_pattern(s)}" for s in self.schemas]
        args = [f"--exclude-schema={_pattern(s)}" for s in self.excluded]
        if self.supabase:
            # As `supabase db dump` does: naming the extensions to dump (plpgsql, built in, when none is in
            # scope) also leaves out the platform's event triggers, casts and database-wide default
            # privileges, which belong to supabase_admin and which the postgres role cannot restore.
            # Publications and subscriptions belong to the realtime service.
            args += [f"--extension={_pattern(e)}" for e in (self.extensions or ["plpgsql"])]
            args += ["--no-publications", "--no-subscriptions"]
        elif tools_major >= 17:
            args += [f"--exclude-extension={_pattern(e)}" for e in self.excluded_extensions]
        return args

    def to_meta(self) -> dict:
        return {"mode": self.mode, "excluded": list(self.excluded),
                "excluded_extensions": list(self.excluded_extensions), "supabase": self.supabase}

    @classmethod
    def from_meta(cls, schemas: list[str], data: dict | None) -> Scope:
        data = data or {}
        return cls(mode=str(data.get("mode", "only")), schemas=list(schemas or []),
                   excluded=list(data.get("excluded") or []),
                   excluded_extensions=list(data.get("excluded_extensions") or []),
                   supabase=bool(data.get("supabase", False)))


def _pattern(name: str) -> str:
    """A pg_dump name pattern matching exactly ``name`` (quoted, so ``*``/``?``/case are literal)."""
    return '"' + name.replace('"', '""') + '"'


async def resolve_scope(con: asyncpg.Connection, supabase: bool, only: list[str] | None) -> Scope:
    rows = await con.fetch(
        "SELECT nspname, has_schema_privilege(oid, 'USAGE') AS usable FROM pg_namespace ORDER BY nspname")
    names = {r["nspname"]: r["usable"] for r in rows if not SYSTEM_SCHEMA_RE.match(r["nspname"])}
    if only:
        missing = [s for s in only if s not in names]
        if missing:
            from .errors import BadInput
            raise BadInput(f"Schema {', '.join(missing)} does not exist in this database.",
                           f"Choose from: {', '.join(sorted(names))}.")
        return Scope(mode="only", schemas=sorted(only), supabase=supabase)
    excluded = sorted(n for n, usable in names.items() if (supabase and is_managed(n)) or not usable)
    schemas = sorted(n for n in names if n not in excluded)
    ext = await con.fetch(
        "SELECT e.extname, n.nspname = ANY($1::text[]) AS outside FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1", excluded)
    return Scope(mode="all-except", schemas=schemas, excluded=excluded,
                 excluded_extensions=[r["extname"] for r in ext if r["outside"]],
                 extensions=[r["extname"] for r in ext if not r["outside"]], supabase=supabase)


async def current_scope_schemas(con: asyncpg.Connection, scope: Scope) -> list[str]:
    """The schemas a restore of ``scope`` must replace, as the database is now (new schemas included)."""
    rows = await con.fetch("SELECT nspname FROM pg_namespace ORDER BY 1")
    present = [r["nspname"] for r in rows if not SYSTEM_SCHEMA_RE.match(r["nspname"])]
    if scope.mode == "only":
        return [s for s in present if s in scope.schemas]
    return [s for s in present if s not in scope.excluded]


_USER_TABLES = """
    SELECT n.nspname, c.relname, c.relkind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind::text = ANY($2::text[]) AND n.nspname = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
    ORDER BY 1, 2"""


async def tables_count(con: asyncpg.Connection, schemas: list[str]) -> int:
    """Tables of relkind r or p in the scope (extension-owned tables excluded: pg_dump skips them)."""
    return len(await con.fetch(_USER_TABLES, schemas, ["r", "p"]))


async def estimate_dump_bytes(con: asyncpg.Connection, schemas: list[str], schema_only: bool) -> int | None:
    """A rough size of the text dump, for progress: heap+TOAST pages of the tables (indexes are not dumped).
    Read from pg_class statistics, not pg_table_size(), which would wait behind other sessions' locks."""
    if schema_only:
        return None
    val = await con.fetchval(
        """SELECT sum((c.relpages::bigint + coalesce(t.relpages, 0)) * current_setting('block_size')::bigint)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
           WHERE c.relkind = 'r' AND n.nspname = ANY($1::text[])""", schemas)
    return int(val) if val else None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def table_names(con: asyncpg.Connection, schemas: list[str]) -> list[str]:
    """``schema.table`` of every ordinary table in the scope (the keys of a snapshot's row_counts)."""
    return [f"{r['nspname']}.{r['relname']}" for r in await con.fetch(_USER_TABLES, schemas, ["r"])]


# -- clearing a scope before replaying a --clean dump ------------------------------------------------------

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


@dataclass
class ClearPlan:
    """SQL to run, inside the restore's transaction, before (``prelude``) and after (``postlude``) the dump."""

    prelude: list[str]
    postlude: list[str]
    preserved: list[str]  # descriptions of outside objects dropped and re-created around the replay


async def plan_clear(con: asyncpg.Connection, schemas: list[str], dumped_global_default_acls: bool,
                     dumped_publications: bool = False) -> ClearPlan:
    """Empty ``schemas`` so that replaying a ``--clean`` dump yields exactly the dump's state.

    * Schemas other than ``public`` are dropped with CASCADE (the dump re-creates them).
    * ``public`` cannot be dropped (pg_dump never re-creates it; its initial privileges would be lost), so its
      objects are dropped one by one, its ACL reset to what pg_dump assumes, its default ACLs cleared.
    * Objects outside the scope that depend on objects inside it (a trigger on auth.users calling
      public.handle_new_user(), a foreign key into a public table, a policy or a column default using a
      public function) are dropped first and re-created after the replay, unchanged. Dependents we cannot
      re-create (a view or a column type outside the scope) stop the restore before it starts.
    * Publications, when the dump has them all (a whole-database, non-Supabase scope): every one is
      dropped, as the dump's own ``--clean`` drops those it re-creates, so that one made after the
      snapshot is gone too. (Subscriptions are left alone: dropping one drops its slot on the publisher.)
    """
    prelude: list[str] = []
    if dumped_publications:
        pubs = await con.fetch("SELECT quote_ident(pubname) AS name FROM pg_publication ORDER BY pubname")
        prelude += [f"DROP PUBLICATION {r['name']};" for r in pubs]
    postlude: list[str] = []
    preserved: list[str] = []
    deps = await con.fetch(
        f"""WITH nsp AS (SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[])), {_OBJ_NS}
        SELECT DISTINCT d.classid::regclass::text AS cls, d.objid, d.objsubid,
               pg_describe_object(d.classid, d.objid, d.objsubid) AS what,
               pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) AS needs
        FROM pg_depend d
        JOIN obj_ns ref ON ref.cls = d.refclassid AND ref.oid = d.refobjid AND ref.ns IN (SELECT oid FROM nsp)
        JOIN obj_ns dep ON dep.cls = d.classid AND dep.oid = d.objid AND dep.ns NOT IN (SELECT oid FROM nsp)
        WHERE d.deptype IN ('n', 'a') AND dep.ns <> 'pg_catalog'::regnamespace
        ORDER BY 1, 2""", schemas)
    blocked = []
    seen: set[tuple[str, int]] = set()
    for d in deps:
        key = (d["cls"], d["objid"])
        if key in seen:
            continue
        seen.add(key)
        if d["cls"] == "pg_trigger":
            t = await con.fetchrow(
                """SELECT pg_get_triggerdef(t.oid) AS def, t.tgenabled::text AS en, quote_ident(t.tgname) AS name,
                          t.tgrelid::regclass::text AS tbl, obj_description(t.oid, 'pg_trigger') AS cmt
                   FROM pg_trigger t WHERE t.oid = $1""", d["objid"])
            prelude.append(f"DROP TRIGGER {t['name']} ON {t['tbl']};")
            postlude.append(t["def"] + ";")
            state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(t["en"])
            if state:
                postlude.append(f"ALTER TABLE {t['tbl']} {state} TRIGGER {t['name']};")
            if t["cmt"] is not None:
                postlude.append(f"COMMENT ON TRIGGER {t['name']} ON {t['tbl']} IS {_literal(t['cmt'])};")
        elif d["cls"] == "pg_constraint":
            c = await con.fetchrow(
                """SELECT quote_ident(conname) AS name, conrelid::regclass::text AS tbl,
                          pg_get_constraintdef(oid) AS def, contype::text AS type
                   FROM pg_constraint WHERE oid = $1""", d["objid"])
            if c["type"] != "f" or c["tbl"] == "-":
                blocked.append(d)
                continue
            prelude.append(f"ALTER TABLE {c['tbl']} DROP CONSTRAINT {c['name']};")
            postlude.append(f"ALTER TABLE {c['tbl']} ADD CONSTRAINT {c['name']} {c['def']};")
        elif d["cls"] == "pg_policy":
            p = await con.fetchrow(
                """SELECT quote_ident(pol.polname) AS name, pol.polrelid::regclass::text AS tbl,
                          pol.polpermissive AS permissive, pol.polcmd::text AS cmd,
                          CASE WHEN pol.polroles = '{0}' THEN ARRAY['PUBLIC']
                               ELSE ARRAY(SELECT quote_ident(rolname) FROM pg_roles
                                          WHERE oid = ANY(pol.polroles) ORDER BY rolname) END AS roles,
                          pg_get_expr(pol.polqual, pol.polrelid) AS qual,
                          pg_get_expr(pol.polwithcheck, pol.polrelid) AS chk
                   FROM pg_policy pol WHERE pol.oid = $1""", d["objid"])
            cmd = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}[p["cmd"]]
            sql = (f"CREATE POLICY {p['name']} ON {p['tbl']} AS {'PERMISSIVE' if p['permissive'] else 'RESTRICTIVE'}"
                   f" FOR {cmd} TO {', '.join(p['roles'])}")
            if p["qual"]:
                sql += f" USING ({p['qual']})"
            if p["chk"]:
                sql += f" WITH CHECK ({p['chk']})"
            prelude.append(f"DROP POLICY {p['name']} ON {p['tbl']};")
            postlude.append(sql + ";")
        elif d["cls"] == "pg_attrdef":
            a = await con.fetchrow(
                """SELECT ad.adrelid::regclass::text AS tbl, quote_ident(att.attname) AS col,
                          pg_get_expr(ad.adbin, ad.adrelid) AS expr, att.attgenerated::text AS gen
                   FROM pg_attrdef ad JOIN pg_attribute att ON att.attrelid = ad.adrelid AND att.attnum = ad.adnum
                   WHERE ad.oid = $1""", d["objid"])
            if a["gen"]:
                blocked.append(d)
                continue
            prelude.append(f"ALTER TABLE {a['tbl']} ALTER COLUMN {a['col']} DROP DEFAULT;")
            postlude.append(f"ALTER TABLE {a['tbl']} ALTER COLUMN {a['col']} SET DEFAULT {a['expr']};")
        else:
            blocked.append(d)
            continue
        preserved.append(f"{d['what']} (uses {d['needs']})")
    if blocked:
        b = blocked[0]
        more = f" and {len(blocked) - 1} more" if len(blocked) > 1 else ""
        raise OperationFailed(
            f"Cannot restore: {b['what']} lies outside the snapshot's scope but depends on {b['needs']}{more}.",
            "Drop it first or snapshot its schema too (--schema), then restore again.")

    for schema in schemas:
        if schema == "public":
            prelude += await _empty_public(con)
        else:
            prelude.append(f"DROP SCHEMA {quote_ident(schema)} CASCADE;")
    acl_prelude, acl_postlude = await _reset_default_acls(con, schemas, dumped_global_default_acls)
    if not dumped_publications:
        members, kept = await _publication_members(con, schemas)
        postlude += members
        preserved += kept
    return ClearPlan(prelude=prelude + acl_prelude, postlude=postlude + acl_postlude, preserved=preserved)


async def _publication_members(con: asyncpg.Connection, schemas: list[str]) -> tuple[list[str], list[str]]:
    """A dump without publications (Supabase's: supabase_realtime is the platform's) has no memberships
    either, and dropping a table or schema of the scope takes it out of every publication: realtime would
    stop for it, silently. The memberships (with their column lists and row filters) are put back after
    the replay, for the tables and schemas the snapshot re-created; one whose table or schema the
    snapshot does not have goes, as anything made after it does."""
    new = con.get_server_version().major >= 15  # asyncpg read it at connect: no query
    rows = await con.fetch(
        f"""SELECT quote_ident(p.pubname) AS pub, p.pubname, n.nspname, c.relname,
                   format('%I.%I', n.nspname, c.relname) AS tbl,
                   {"pg_get_expr(r.prqual, r.prrelid)" if new else "NULL::text"} AS qual,
                   {"(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a "
                    "WHERE a.attrelid = r.prrelid AND a.attnum = ANY(r.prattrs))" if new else "NULL::text"} AS cols
            FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid
            JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::text[]) ORDER BY 2, 3, 4""", schemas)
    postlude, kept = [], []
    for r in rows:
        target = r["tbl"] + (f" ({r['cols']})" if r["cols"] else "") + (f" WHERE ({r['qual']})" if r["qual"] else "")
        postlude.append(f"DO $dbsage$ BEGIN IF to_regclass({_literal(r['tbl'])}) IS NOT NULL THEN "
                        f"ALTER PUBLICATION {r['pub']} ADD TABLE ONLY {target}; END IF; END $dbsage$;")
        kept.append(f"table {r['tbl']} in publication {r['pubname']}")
    if new:  # FOR TABLES IN SCHEMA (PostgreSQL 15+); public is emptied, never dropped: its entries stay
        for r in await con.fetch(
                """SELECT quote_ident(p.pubname) AS pub, p.pubname, n.nspname FROM pg_publication_namespace pn
                   JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid
                   WHERE n.nspname = ANY($1::text[]) AND n.nspname <> 'public' ORDER BY 2, 3""", schemas):
            postlude.append(f"DO $dbsage$ BEGIN IF to_regnamespace({_literal(quote_ident(r['nspname']))}) IS NOT NULL "
                            f"THEN ALTER PUBLICATION {r['pub']} ADD TABLES IN SCHEMA {quote_ident(r['nspname'])}; "
                            f"END IF; END $dbsage$;")
            kept.append(f"schema {r['nspname']} in publication {r['pubname']}")
    return postlude, kept


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def _empty_public(con: asyncpg.Connection) -> list[str]:
    rows = await con.fetch(
        """SELECT (pg_identify_object(d.classid, d.objid, 0)).type AS kind,
                  (pg_identify_object(d.classid, d.objid, 0)).identity AS ident
           FROM pg_depend d
           WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = 'public'::regnamespace
             AND d.deptype = 'n'
             AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid
                             AND e.deptype = 'e')""")
    sql = []
    unknown = sorted({r["kind"] for r in rows if r["kind"] not in _DROP_RANK})
    if unknown:
        raise OperationFailed(f"Cannot clear schema public: it holds objects of kind {', '.join(unknown)}.",
                              "Please report this; restore by hand with psql meanwhile.")
    keyword = dict(_DROP_ORDER)
    for r in sorted(rows, key=lambda r: (_DROP_RANK[r["kind"]], r["ident"])):
        sql.append(f"DROP {keyword[r['kind']]} IF EXISTS {r['ident']} CASCADE;")
    # Reset the schema's ACL to the state pg_dump measures its GRANT/REVOKE commands from: the initial
    # privileges initdb recorded (pg_init_privs), with pg_database_owner standing for the owner.
    acl = await con.fetchrow(
        """SELECT n.nspowner::regrole::text AS owner,
                  ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                             ELSE quote_ident(a.grantee::regrole::text) END
                        FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a) AS grantees,
                  ARRAY(SELECT format('GRANT %s ON SCHEMA public TO %s%s', a.privilege_type,
                                      CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                           WHEN a.grantee = 'pg_database_owner'::regrole
                                                THEN quote_ident(n.nspowner::regrole::text)
                                           ELSE quote_ident(a.grantee::regrole::text) END,
                                      CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                        FROM aclexplode(coalesce(
                             (SELECT initprivs FROM pg_init_privs WHERE classoid = 'pg_namespace'::regclass
                              AND objoid = n.oid AND objsubid = 0),
                             acldefault('n', n.nspowner))) a) AS grants
           FROM pg_namespace n WHERE n.nspname = 'public'""")
    # pg_dump omits public's comment when it is initdb's; it emits COMMENT ... IS NULL when there is none.
    sql.append("COMMENT ON SCHEMA public IS 'standard public schema';")
    if acl is not None:
        sql += [f"REVOKE ALL ON SCHEMA public FROM {g} CASCADE;" for g in acl["grantees"]]
        sql += [g + ";" for g in acl["grants"]]
    return sql


_DEFACL_KIND = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS",
                "L": "LARGE OBJECTS"}


async def _reset_default_acls(con: asyncpg.Connection, schemas: list[str],
                              dumped_global: bool) -> tuple[list[str], list[str]]:
    """ALTER DEFAULT PRIVILEGES commands (prelude, postlude) around the replay.

    Default privileges apply to every object the replay creates, but pg_dump writes each object's grants
    relative to the built-in defaults and its own default-privilege commands last. So they are all brought
    back to the built-in defaults first. Schema-specific entries of dropped schemas vanish with them; those
    of public are reset here and re-created by the dump. Database-wide entries are re-created by the dump when
    it holds them (``dumped_global``: a whole-database, non-Supabase scope); otherwise they are set aside and
    put back exactly as they were in the postlude. Only roles we may act for are touched."""
    rows = await con.fetch(
        """SELECT quote_ident(d.defaclrole::regrole::text) AS role, d.defaclobjtype::text AS kind,
                  CASE WHEN d.defaclnamespace = 0 THEN NULL ELSE d.defaclnamespace::regnamespace::text END AS nsp,
                  ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                        ELSE quote_ident(a.grantee::regrole::text) END
                        FROM aclexplode(d.defaclacl) a) AS grantees,
                  ARRAY(SELECT format('%s TO %s%s', a.privilege_type,
                                      CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                      ELSE quote_ident(a.grantee::regrole::text) END,
                                      CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                        FROM aclexplode(d.defaclacl) a) AS current,
                  CASE WHEN d.defaclnamespace = 0 THEN ARRAY(
                        SELECT format('%s TO %s', a.privilege_type,
                                      CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                      ELSE quote_ident(a.grantee::regrole::text) END)
                        FROM aclexplode(acldefault(CASE d.defaclobjtype WHEN 'S' THEN 's' WHEN 'T' THEN 'T'
                                        WHEN 'r' THEN 'r' WHEN 'f' THEN 'f' WHEN 'n' THEN 'n' ELSE 'L' END::"char",
                                        d.defaclrole)) a) ELSE '{}' END AS defaults
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
        for grant in r["defaults"]:
            priv, _, grantee = grant.partition(" TO ")
            prelude.append(f"{head} GRANT {priv} ON {kind} TO {grantee};")
        if r["nsp"] is None and not dumped_global:
            default_grantees = sorted({g.partition(" TO ")[2] for g in r["defaults"]})
            if default_grantees:
                postlude.append(f"{head} REVOKE ALL ON {kind} FROM {', '.join(default_grantees)};")
            for grant in r["current"]:
                priv, _, grantee = grant.partition(" TO ")
                postlude.append(f"{head} GRANT {priv} ON {kind} TO {grantee};")
    return prelude, postlude
