"""Hosted Supabase as our users meet it: the platform built from Supabase's own SQL, the app applied and
every snapshot and restore made as the non-superuser ``postgres`` (``conftest.Platform``). "Exact" is a
pg_dump of the whole database taken as the superuser supabase_admin (owners and privileges of every
schema, auth and storage included) at snapshot time and after the restore."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import quote

import pytest

from services.errors import OperationFailed
from services.server import dump, restore
from services.server.processes import embedded_bindir
from services.snapshots.store import SnapshotStore
from tests.helpers import PLATFORM, assert_same, comparable, run_cli

#: The platform's SQL differs by server version (hosted projects run 15 and newer): built and tested on each.
pytestmark = pytest.mark.every_version

LATER_SCHEMA = "supabase_subscription_mgmt"
LATER_MIGRATION = PLATFORM / "sql/supabase-postgres/later/20250915105031_add_subscription_mgmt_schema.sql"

#: What a bad migration does: destroys outside objects with CASCADE, drops a realtime table, revokes
#: grants, changes default privileges, records itself in the history, adds a table.
MIGRATION = """
    DROP FUNCTION public.handle_new_user() CASCADE;
    DROP FUNCTION public.is_avatar_owner(text) CASCADE;
    DROP TABLE public.messages;
    CREATE TABLE public.later (id int PRIMARY KEY);
    REVOKE ALL ON public.profiles FROM anon, authenticated;
    REVOKE SELECT ON public.profile_names FROM anon;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM anon;
    ALTER TYPE public.user_role ADD VALUE 'owner';
    DELETE FROM public.profiles WHERE username = 'ada';
    INSERT INTO supabase_migrations.schema_migrations (version, name) VALUES ('20261201000000', 'break_things');
"""


def admin_dump(platform, conn, *exclude: str) -> str:
    """The whole database as supabase_admin sees it (less the ``exclude`` schemas), ``comparable``."""
    res = subprocess.run([str(embedded_bindir() / "pg_dump"), "--no-password",
                          *(f"--exclude-schema={s}" for s in exclude)],
                         env=platform.conn(conn.dbname, "supabase_admin").child_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return comparable(res.stdout)


def sign_up(platform, conn, uid: str, username: str) -> str:
    """A new user through auth, as the auth server inserts it (as supabase_auth_admin); returns the
    profile the sign-up trigger made, or an empty string."""
    platform.psql(f"""INSERT INTO auth.users (instance_id, id, aud, role, email, raw_user_meta_data)
                      VALUES ('00000000-0000-0000-0000-000000000000', '{uid}', 'authenticated', 'authenticated',
                              '{username}@example.com', '{{"username": "{username}"}}')""",
                  conn.dbname, "supabase_auth_admin")
    return platform.psql(f"SELECT username FROM public.profiles WHERE id = '{uid}'", conn.dbname).strip()


async def test_restore_as_postgres_is_exact_after_a_destructive_migration(platform, supa, snapdir):
    store = SnapshotStore(snapdir)
    platform.psql("ANALYZE public.profiles", supa.dbname, "postgres")
    stats = ("SELECT attname, null_frac, n_distinct, most_common_vals::text FROM pg_stats "
             "WHERE schemaname = 'public' AND tablename = 'profiles' ORDER BY attname")
    stats_before = platform.psql(stats, supa.dbname)
    snap = await dump.snapshot(supa, store, "before-migration")
    before = admin_dump(platform, supa)
    meta = snap.meta
    # PostgreSQL 18: the planner's statistics travel with the snapshot, and postgres puts them back.
    carried = int(platform.psql("SHOW server_version_num", supa.dbname)) >= 180000
    assert meta["statistics"] is carried
    assert meta["role"] == "postgres" and meta["schemas"] == ["public", "supabase_migrations"]
    assert meta["migration"] == {"version": "20261102090000", "name": "messages"}
    assert meta["default_privileges_left_alone"] == ["supabase_admin"]
    assert meta["outside_dependents"] == [
        "trigger on_auth_user_created on table auth.users (uses function public.handle_new_user())",
        "policy Anyone can upload their own avatar. on table storage.objects (uses function "
        "public.is_avatar_owner(text))",
        "table public.messages in publication supabase_realtime"]
    text = snap.path.read_text()
    assert "\nALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin" not in text  # commented out, never sent
    assert "-- dbsage-tui: another role's, left as it is: ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin" in text
    assert text.rstrip().endswith("-- dbsage-tui appendix complete\n--")
    assert "CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users" in text

    platform.psql(MIGRATION, supa.dbname, "postgres")
    # A later platform migration, applied by the platform: a schema of supabase_admin's we have never heard of.
    platform.psql(LATER_MIGRATION.read_text(), supa.dbname)
    assert sign_up(platform, supa, "44444444-4444-4444-4444-444444444444", "lost") == ""  # trigger is gone

    result = await restore.restore(supa, store, snap)
    assert result.smoke_ok, result.checks
    assert platform.psql(stats, supa.dbname) == stats_before
    assert platform.psql("SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'public.profiles'::regclass",
                         supa.dbname).strip() == ("0" if carried else "1")
    after = admin_dump(platform, supa, LATER_SCHEMA)
    # The user signed up in between stays in auth (out of scope); their profile row, made by nothing, is
    # absent as at snapshot time. Everything else, every owner and privilege, is as the snapshot captured.
    assert_same(before, _without_user(after, "44444444-4444-4444-4444-444444444444"))
    # The platform's new schema is left exactly as the platform made it.
    assert platform.psql(f"SELECT count(*) FROM pg_proc WHERE pronamespace = '{LATER_SCHEMA}'::regnamespace",
                         supa.dbname).strip() != "0"
    # Sign-ups make profiles again; history lists what was applied at snapshot time; realtime is back on.
    assert sign_up(platform, supa, "55555555-5555-5555-5555-555555555555", "newbie") == "newbie"
    assert platform.psql("SELECT string_agg(version || ' ' || name, ',' ORDER BY version) "
                         "FROM supabase_migrations.schema_migrations", supa.dbname).strip() == \
        "20261101090000 profiles,20261102090000 messages"
    assert platform.psql("SELECT string_agg(tablename, ',') FROM pg_publication_tables "
                         "WHERE pubname = 'supabase_realtime'", supa.dbname).strip() == "messages"


def _without_user(dump_text: str, uid: str) -> str:
    """The dump less the auth.users row of ``uid`` (a COPY line), signed up after the snapshot."""
    return "\n".join(ln for ln in dump_text.split("\n") if not ln.startswith("00000000-0000-0000-0000-000000000000\t"
                                                                               + uid))


async def test_emergency_rollback_and_schema_snapshot_from_the_cli_as_postgres(platform, supa, snapdir):
    env = {"SUPABASE_DB_URL": _url(supa), "DBSAGE_SNAPSHOT_DIR": str(snapdir)}
    # A platform schema of supabase_admin's that is on no list of ours, there before the snapshots.
    platform.psql(LATER_MIGRATION.read_text(), supa.dbname)
    before = admin_dump(platform, supa)
    res = run_cli("snapshot", "--label", "nightly", "--json", env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli("snapshot", "--label", "schema-only", "--type", "schema", env=env)
    assert res.returncode == 0, res.stderr
    platform.psql(MIGRATION, supa.dbname, "postgres")

    res = run_cli("restore", "1", "--yes", "--no-pre-snapshot", env=env)  # the schema snapshot
    assert res.returncode == 0, res.stderr
    assert platform.psql("SELECT count(*) FROM public.profiles", supa.dbname).strip() == "0"
    # ... but not the migration history's: the structure is the snapshot's, so is the list of what made it.
    assert platform.psql("SELECT string_agg(version, ',' ORDER BY version) FROM supabase_migrations.schema_migrations",
                         supa.dbname).strip() == "20261101090000,20261102090000"
    assert sign_up(platform, supa, "66666666-6666-6666-6666-666666666666", "schemaonly") == "schemaonly"
    platform.psql("DELETE FROM auth.users WHERE id = '66666666-6666-6666-6666-666666666666'", supa.dbname)

    res = run_cli("rollback", "--emergency", "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["snapshot"].endswith("_nightly.sql")
    assert_same(before, admin_dump(platform, supa))

    res = run_cli("show", "3", env=env)  # pre-rollback, schema-only, nightly
    assert res.returncode == 0, res.stderr
    assert "20261102090000 messages" in res.stdout
    assert "Left out:  auth, extensions," in res.stdout and "(managed by Supabase)" in res.stdout
    assert f"{LATER_SCHEMA} (owned by supabase_admin)" in res.stdout
    listed = json.loads(run_cli("list", "--json", env=env).stdout)
    assert [(s["label"], s["migration"]) for s in listed] == [
        ("pre-rollback", "20261102090000 messages"), ("schema-only", "20261102090000 messages"),
        ("nightly", "20261102090000 messages")]
    assert "trigger on_auth_user_created on table auth.users" in res.stdout


def _url(conn) -> str:
    return (f"postgresql://{conn.user}:{quote(conn.password, safe='')}@{conn.host}:{conn.port}/{conn.dbname}")


async def test_restore_refuses_early_what_postgres_cannot_own(platform, supa, snapdir):
    """An object in the scope that belongs to supabase_admin: refused before anything is touched (no
    pre-rollback snapshot either), in one sentence naming the object and its owner."""
    store = SnapshotStore(snapdir)
    snap = await dump.snapshot(supa, store, "before")
    platform.psql("CREATE TABLE public.platform_owned (id int)", supa.dbname)  # as supabase_admin
    state = admin_dump(platform, supa)
    with pytest.raises(OperationFailed) as err:
        await restore.restore(supa, store, snap)
    msg = err.value.one_line()
    assert "table public.platform_owned" in msg and "belongs to supabase_admin" in msg, msg
    assert "restore as the postgres role" not in msg.lower()
    assert admin_dump(platform, supa) == state
    assert [s.label for s in store.list()] == ["before"]
    assert store.read_audit()[-1]["outcome"] == "refused"
