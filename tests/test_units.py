"""Unit tests of the engine's pure parts: connection settings, labels, the dump scanner, metadata loading,
and the rule that services/ never imports Textual."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.config import Settings, load_settings, parse_url, resolve_snapshot_dir, resolve_target
from services.display import compact_age
from services.errors import BadInput
from services.snapshots.scanner import DumpScanner, parse_qualified_name, trailer_ok
from services.snapshots.store import check_label, load_meta, suggest_label
from tests.helpers import FIXTURES


def test_services_never_import_textual():
    """The engine is UI-free (harlequin's habit): importing every service module leaves Textual unloaded."""
    code = ("import sys, pkgutil, importlib, services\n"
            "for m in pkgutil.walk_packages(services.__path__, 'services.'): importlib.import_module(m.name)\n"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_url_with_percent_encoded_password_and_masking():
    conn = parse_url("postgresql://app%40user:p%40ss%3Aw%2Ford@db.example.com:6543/my%20db?sslmode=require")
    assert (conn.user, conn.password, conn.host, conn.port, conn.dbname) == (
        "app@user", "p@ss:w/ord", "db.example.com", 6543, "my db")
    assert conn.sslmode == "require"
    assert "p@ss" not in conn.url() and "****" in conn.url()
    assert "p@ss" not in conn.display and "p@ss" not in repr(conn)
    env = conn.child_env({"PATH": "/bin", "PGPASSWORD": "stale", "PGSERVICE": "x"})
    assert env["PGPASSWORD"] == "p@ss:w/ord" and env["PGSSLMODE"] == "require" and "PGSERVICE" not in env


def test_target_layering():
    env = {"SUPABASE_DB_URL": "postgresql://a@h1/db1", "DATABASE_URL": "postgresql://b@h2/db2", "PGHOST": "h3"}
    assert resolve_target("postgresql://c@h0/db0", env).host == "h0"
    assert resolve_target(None, env).host == "h1"
    del env["SUPABASE_DB_URL"]
    assert resolve_target(None, env).host == "h2"
    del env["DATABASE_URL"]
    assert resolve_target(None, {"PGHOST": "h3", "PGUSER": "u", "PGPASSWORD": "pw"}).password == "pw"
    assert resolve_target(None, {}) is None
    with pytest.raises(BadInput):
        parse_url("mysql://x@y/z")


def test_snapshot_dir_layering(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("snapshot_dir: /from/config\n")
    env = {"DBSAGE_CONFIG": str(cfg)}
    assert str(resolve_snapshot_dir(None, env)) == "/from/config"
    assert str(resolve_snapshot_dir(None, {**env, "DBSAGE_SNAPSHOT_DIR": "/from/env"})) == "/from/env"
    assert str(resolve_snapshot_dir("/from/flag", {**env, "DBSAGE_SNAPSHOT_DIR": "/x"})) == "/from/flag"
    assert str(resolve_snapshot_dir(None, {"DBSAGE_CONFIG": str(tmp_path / "none.yaml")})) == "supabase/snapshots"


def test_the_config_file_is_read_once_into_typed_settings(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("compress: zstd\nlock_timeout: 5\nretention: {keep_all_days: 1, daily_days: 2}\n"
                   "keymap: {new-snapshot: ctrl+n}\n")
    s = load_settings({"DBSAGE_CONFIG": str(cfg)})
    assert (s.compress, s.lock_timeout, s.keymap) == ("zstd", 5.0, {"new-snapshot": "ctrl+n"})
    assert (s.retention.keep_all_days, s.retention.daily_days, s.retention.weekly_days) == (1, 2, 365)
    assert load_settings({"DBSAGE_CONFIG": str(tmp_path / "none.yaml")}) == Settings()
    for bad, words in [("compress: lz4", "compress is 'lz4'"), ("lock_timeout: -1", "lock_timeout is -1"),
                       ("keymap: [n]", "keymap: is not a mapping"), ("retention: {daily_days: x}", "whole numbers"),
                       ("retention: {keep_all_days: 9, daily_days: 2}", "must not overlap")]:
        cfg.write_text(bad + "\n")
        with pytest.raises(BadInput, match=words):
            load_settings({"DBSAGE_CONFIG": str(cfg)})


@pytest.mark.parametrize("label, suggestion", [
    ("", "snapshot"), ("a" * 65, "a" * 64), ("../x", "x"), ("a/b", "a-b"), ("my label", "my-label"),
    ("new\nline", "new-line"), ("$(rm -rf ~)", "rm-rf"), ("-leading", "leading"), ("café", "caf"),
    ("x;y|z&", "x-y-z"),
])
def test_bad_labels_are_refused_with_a_valid_suggestion(label, suggestion):
    with pytest.raises(BadInput) as err:
        check_label(label)
    assert suggest_label(label) == suggestion
    assert f"Try: {suggestion}" in err.value.one_line()
    check_label(suggestion)  # the suggestion itself is valid


def test_valid_labels():
    for label in ("v1.0", "before-migration", "release-2.3.1", "a", "A_b.c-d", "x" * 64):
        assert check_label(label) == label


def test_qualified_names():
    assert parse_qualified_name('public."Order Details" (a, b) FROM stdin;')[0] == ["public", "Order Details"]
    assert parse_qualified_name('"we""ird"."a.b" FROM')[0] == ['we"ird', "a.b"]
    assert parse_qualified_name("public.actor (actor_id)")[0] == ["public", "actor"]


def test_scanner_counts_copy_rows_whatever_the_chunking(tmp_path):
    """Northwind's COPY blocks, fed in chunks from 1 byte to 1 MiB, always give the same exact counts."""
    import re
    text = (FIXTURES / "northwind.sql").read_bytes()
    # The fixture uses INSERTs; build a COPY-format dump body from them to exercise the scanner.
    body = [b"--\n-- PostgreSQL database dump\n--\n\nSET x = 1;\n"]
    expected: dict[str, int] = {}
    inserts = re.findall(rb"INSERT INTO (\w+) VALUES \((.*)\);", text)
    by_table: dict[bytes, list[bytes]] = {}
    for table, values in inserts:
        by_table.setdefault(table, []).append(values.replace(b", ", b"\t"))
    for table, rows in by_table.items():
        body.append(b"COPY public." + table + b" (c) FROM stdin;\n" + b"\n".join(rows) + b"\n\\.\n\n")
        expected[f"public.{table.decode()}"] = len(rows)
    body.append(b"COPY public.empty (c) FROM stdin;\n\\.\n")
    expected["public.empty"] = 0
    body.append(b"\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n")
    data = b"".join(body)
    assert sum(expected.values()) > 3000
    for size in (1, 2, 3, 7, 64, 4096, 1 << 20):
        scanner = DumpScanner()
        for i in range(0, len(data), size):
            scanner.feed(data[i:i + size])
        res = scanner.finish()
        assert res.complete, size
        assert res.row_counts == expected, size


_OTHERS = b"ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public GRANT ALL ON TABLES TO anon;"
_OURS = b"ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES TO anon;"
_MARK = b"-- dbsage-tui: another role's, left as it is: "


def _dump_with_others(mark: bytes) -> bytes:
    return b"".join([
        b"--\n-- PostgreSQL database dump\n--\n\nSET x = 1;\n", mark, _OTHERS, b"\n",
        b"COPY public.notes (body) FROM stdin;\n", _OTHERS, b"\n", b"plain row\n\\.\n\n",  # a look-alike row
        _OURS, b"\n", mark, _OTHERS, b"\n",
        b"\n--\n-- PostgreSQL database dump complete\n--\n\n"])


_DUMP_WITH_OTHERS = _dump_with_others(b"")


def test_pump_comments_out_other_roles_default_privileges_whatever_the_chunking(tmp_path):
    """Snapshot time: another role's ALTER DEFAULT PRIVILEGES lines are written commented out, ours and
    COPY data (even a row that reads the same) are untouched, wherever the chunks split the lines; the
    sha256 is of the bytes in the file; the appendix follows pg_dump's trailer and completes the file."""
    import hashlib

    from services.server.dump import SnapshotPump, others_default_privileges
    from services.snapshots.scanner import APPENDIX_BEGIN, APPENDIX_END
    appendix = b"\n--\n" + APPENDIX_BEGIN + b" x\n--\nCREATE TRIGGER t AFTER INSERT ON auth.users;\n--\n" \
        + APPENDIX_END + b"\n--\n"
    want = _dump_with_others(_MARK) + appendix
    for size in (1, 2, 7, 64, 4096):
        seen: set[str] = set()
        scanner = DumpScanner(rewrite=others_default_privileges(["supabase_admin"], seen))
        out = tmp_path / f"out{size}.sql"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
        digest = hashlib.sha256()
        pump = SnapshotPump(-1, fd, digest, scanner)
        for i in range(0, len(_DUMP_WITH_OTHERS), size):
            pump.feed(_DUMP_WITH_OTHERS[i:i + size])
        pump.finish(appendix)
        os.close(fd)
        assert out.read_bytes() == want, size
        assert digest.hexdigest() == hashlib.sha256(want).hexdigest() and pump.written == len(want)
        res = scanner.finish()
        assert res.complete and res.row_counts == {"public.notes": 2} and seen == {"supabase_admin"}, size
    assert trailer_ok(want[-4096:])
    assert not trailer_ok(want[:-len(appendix) + 20]), "an appendix cut short is not a complete file"


def test_scanner_detects_truncation():
    data = b"--\n-- PostgreSQL database dump\n--\nCOPY public.t (a) FROM stdin;\n1\n2\n"
    s = DumpScanner()
    s.feed(data)
    res = s.finish()
    assert not res.complete and res.in_copy_at_end


def test_trailer_rules():
    assert trailer_ok(b"x\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict KEY\n\n")
    assert trailer_ok(b"-- PostgreSQL database dump complete\n--\n\n")
    assert not trailer_ok(b"-- PostgreSQL database dump complete\n--\nDROP TABLE x;\n")
    assert not trailer_ok(b"COPY x FROM stdin;\n1\n")


@pytest.mark.parametrize("text, reason", [
    ("snapshot: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "no 'snapshot:' mapping"),
    ("snapshot: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\nsnapshot: {label: *c}\n", "aliases"),
    ("snapshot: !custom {a: 1}\n", "not valid YAML"),
])
def test_hostile_metadata_is_rejected_safely(tmp_path, text, reason):
    path = tmp_path / "x.sql.meta.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_meta(path)
    assert reason in str(err.value)


_DUMP_HEAD = b"""SET statement_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
CREATE TABLE public.t (a integer, b text);
ALTER TABLE ONLY public.t ALTER COLUMN a SET (pg_attver=22158952);
ALTER TABLE ONLY public.t ALTER COLUMN b SET (pg_attver=22158952, n_distinct=5);
ALTER FOREIGN TABLE ONLY public.f ALTER COLUMN c SET (n_distinct_inherited=2, pg_attver=7);
"""
_DUMP_DATA = b"""COPY public.t (a, b) FROM stdin;
1\tALTER TABLE ONLY public.t ALTER COLUMN a SET (pg_attver=1);
\\.

SET transaction_timeout = 0;
-- PostgreSQL database dump complete
"""


@pytest.mark.parametrize("major", [15, 18])
def test_replay_filter_leaves_out_stamps_and_unknown_settings_in_any_chunking(major):
    """What psql receives: no pg_attver (options users set kept), no transaction_timeout for a server
    before 17, the same number of lines (psql's error line numbers stay the file's), and the data after
    the first COPY byte for byte, even where it looks like a stamped line; whatever the chunk boundaries."""
    from services.server.replay_filter import ReplayFilter
    text = _DUMP_HEAD + _DUMP_DATA
    want_head = (_DUMP_HEAD.replace(b"ALTER TABLE ONLY public.t ALTER COLUMN a SET (pg_attver=22158952);", b"")
                 .replace(b"(pg_attver=22158952, n_distinct=5)", b"(n_distinct=5)")
                 .replace(b"(n_distinct_inherited=2, pg_attver=7)", b"(n_distinct_inherited=2)"))
    if major < 17:
        want_head = want_head.replace(b"SET transaction_timeout = 0;", b"")
    for size in (1, 2, 3, 7, 64, len(text)):
        f = ReplayFilter(major)
        out = b"".join(f.feed(text[i:i + size]) for i in range(0, len(text), size)) + f.flush()
        assert out == want_head + _DUMP_DATA, size
        assert out.count(b"\n") == text.count(b"\n")


_STATS_ENTRY = b"""--
-- Statistics for Name: t; Type: STATISTICS DATA; Schema: public; Owner: -
--

SELECT * FROM pg_catalog.pg_restore_relation_stats(
\t'version', '180006'::integer,
\t'relname', 't'
);
SELECT * FROM pg_catalog.pg_restore_attribute_stats(
\t'most_common_vals', '{"a
-- b"}'::text
);

"""
_STATS_ENTRY_COMMENTED = b"""--
-- Statistics for Name: t; Type: STATISTICS DATA; Schema: public; Owner: -
--

-- SELECT * FROM pg_catalog.pg_restore_relation_stats(
-- \t'version', '180006'::integer,
-- \t'relname', 't'
-- );
-- SELECT * FROM pg_catalog.pg_restore_attribute_stats(
-- \t'most_common_vals', '{"a
-- b"}'::text
-- );

"""


def _stats_dump(entry: bytes) -> bytes:
    return (b"CREATE TABLE public.t (a int);\n" + entry + b"COPY public.t (a) FROM stdin;\n1\n\\.\n\n" + entry
            + b"--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\n"
            b"ALTER TABLE ONLY public.t ADD CONSTRAINT t_pkey PRIMARY KEY (a);\n\n" + entry
            + b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n")


@pytest.mark.parametrize("major", [15, 17, 18])
def test_replay_filter_comments_out_statistics_for_a_server_before_18_in_any_chunking(major):
    """A PostgreSQL 18 snapshot's statistics entries (before the data too, as a materialized view's can
    be) reach an older server as comments, up to the next entry of another kind or the trailer; table
    data, other entries and psql's ``\\unrestrict`` pass as they are; line numbers stay the file's."""
    from services.server.replay_filter import ReplayFilter
    text = _stats_dump(_STATS_ENTRY)
    want = text if major >= 18 else _stats_dump(_STATS_ENTRY_COMMENTED)
    for size in (1, 2, 5, 24, 25, 26, 64, len(text)):
        f = ReplayFilter(major)
        out = b"".join(f.feed(text[i:i + size]) for i in range(0, len(text), size)) + f.flush()
        assert out == want, size
        assert out.count(b"\n") == text.count(b"\n")


def test_replay_filter_passes_a_file_without_copy_and_without_final_newline():
    from services.server.replay_filter import ReplayFilter
    f = ReplayFilter(18)
    text = b"CREATE TABLE t (a int);\nALTER TABLE ONLY t ALTER COLUMN a SET (pg_attver=3);"
    assert f.feed(text[:30]) + f.feed(text[30:]) + f.flush() == b"CREATE TABLE t (a int);\n"


def test_ages_change_exactly_when_their_text_does():
    """The table re-renders an age only at ``next_change``: that must be the very second its compact age
    reads otherwise, never later, and the 24 h highlight ends on the dot. Walked second by second over the
    first three hours and around the day mark, then hour by hour for two years."""
    from widgets.snapshot_table import RECENT, next_change
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ages = [*range(0, 3 * 3600), *range(23 * 3600, 25 * 3600), *range(25 * 3600, 800 * 86400, 3600)]
    texts = {age: compact_age(ts, ts + dt.timedelta(seconds=age)) for age in ages}
    step = dict(zip(ages, ages[1:], strict=False))
    for age in ages[:-1]:
        now = ts + dt.timedelta(seconds=age, microseconds=250_000)
        due = next_change(ts, now)
        assert due > now, age
        nxt = step[age]
        if nxt == age + 1:  # walked by the second: the next second's text tells whether it changes there
            changes = texts[nxt] != texts[age] or ts + dt.timedelta(seconds=nxt) == ts + RECENT
            assert (due == ts + dt.timedelta(seconds=nxt)) == changes, (age, texts[age], texts[nxt], due)
        else:  # walked by the hour: no change is missed in between
            assert due <= ts + dt.timedelta(seconds=nxt) or texts[nxt] == texts[age], (age, due)
    assert [texts[a] for a in (59, 60, 8 * 60, 3 * 86400, 700 * 86400)] == ["59s", "1m", "8m", "3d", "1y11mo"]
    # A timestamp ahead of the clock reads "now" and is looked at again in a second.
    assert compact_age(ts, ts - dt.timedelta(minutes=5)) == "now"
    assert next_change(ts, ts - dt.timedelta(minutes=5)) == ts - dt.timedelta(minutes=5, seconds=-1)


def test_a_killed_relays_socket_directory_is_swept_by_the_next_relay(monkeypatch):
    """A relay killed with SIGKILL cannot remove its directory; the next one removes it (and leaves the
    live ones alone)."""
    import shutil
    import tempfile
    tmp_path = Path(tempfile.mkdtemp(prefix="sweep-", dir="/tmp"))  # short: a socket path has 108 bytes at most

    from services.config import ConnInfo
    from services.server.tls import TlsRelay
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"dbsage-tls-{child.stdout.strip()}-abc"
    dead.mkdir()
    (dead / ".s.PGSQL.5432").touch()
    alive = tmp_path / f"dbsage-tls-{os.getpid()}-xyz"
    alive.mkdir()
    with TlsRelay(ConnInfo(host="db.example.com", params=(("sslmode", "require"),))) as relay:
        assert relay.dir.startswith(str(tmp_path / f"dbsage-tls-{os.getpid()}-"))
        assert not dead.exists() and alive.exists()
    assert not Path(relay.dir).exists()
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize(("body", "why"), [(b"compress: [\n", "expected the node content"),
                                           (b"\xff\xfe", "not UTF-8 text")])
def test_a_broken_config_file_is_one_sentence_in_words(tmp_path, body, why):
    path = tmp_path / "config.yaml"
    path.write_bytes(body)
    with pytest.raises(BadInput) as err:
        load_settings({"DBSAGE_CONFIG": str(path)})
    assert why in err.value.message and "Error" not in err.value.message
