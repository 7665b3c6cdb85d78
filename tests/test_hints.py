"""Hints are meant to be copied and pasted: they name the variable the user set and, in demo mode, the
``--demo`` flag, so that each works as printed."""

from __future__ import annotations

import json
import shlex
import socket

import pytest

from services.config import ConnInfo
from services.snapshots.record import restore_instructions
from tests.helpers import run_cli


def test_demo_hints_carry_the_demo_flag_and_no_psql_line():
    text = restore_instructions("20261207101500_x.sql", 18, 18, ConnInfo(source="--demo"))
    assert text == "dbsage-tui --demo restore 20261207101500_x.sql\n"


def test_by_hand_line_names_the_variable_the_snapshot_was_taken_with():
    for source, expected in (("DATABASE_URL", 'psql "$DATABASE_URL" '), ("SUPABASE_DB_URL", 'psql "$SUPABASE_DB_URL" '),
                             ("PG* environment", "psql --single-transaction")):
        text = restore_instructions("20261207101500_x.sql", 18, 18, ConnInfo(source=source))
        assert text.startswith("dbsage-tui restore 20261207101500_x.sql\n") and expected in text, text


def test_a_refused_connection_names_database_url_when_that_was_set(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_cli("snapshot", "--label", "x", "--dir", str(tmp_path),
                  env={"DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{port}/db", "SUPABASE_DB_URL": ""})
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "DATABASE_URL" in res.stderr and "SUPABASE_DB_URL" not in res.stderr, res.stderr


@pytest.mark.pg
def test_the_demo_s_hints_work_as_printed(tmp_path):
    """Every copy-paste line the demo prints carries --demo, and running it as printed works."""
    env = {"DBSAGE_DATA_DIR": str(tmp_path / "data")}
    res = run_cli("--demo", "snapshot", "--label", "first", env=env)
    assert res.returncode == 0, res.stderr
    [hint] = [ln for ln in res.stdout.splitlines() if ln.startswith("Restore with: ")]
    assert hint.startswith("Restore with: dbsage-tui --demo restore ")
    meta = json.loads(run_cli("--demo", "list", "--json", env=env).stdout)
    assert "dbsage-tui --demo restore" in run_cli("--demo", "show", "1", env=env).stdout
    res = run_cli(*shlex.split(hint.removeprefix("Restore with: dbsage-tui ")), "--yes", "--no-pre-snapshot", env=env)
    assert res.returncode == 0 and meta[0]["label"] == "first", res.stderr
