"""metafast reads what ``write_meta`` writes exactly as PyYAML does, and hands anything else to PyYAML.

Property tests compare against ``yaml.safe_load`` (and the C loader ``load_meta`` falls back to): metadata
dicts like the product writes must take the fast path and give the same result; hand-written YAML must
either give the same result or be refused (``Unsupported``), never a different value and never a value
for text that PyYAML rejects.
"""

from __future__ import annotations

import math
import re
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import metafast
from services.metafast import Unsupported
from services.store import SnapshotStore, load_meta

_CLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def same(a, b) -> bool:
    """Equal, with the same types all the way down (1 != 1.0 != True here), NaN equal to NaN, key order."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# -- metadata as the product writes it ---------------------------------------------------------------------

#: Strings that YAML would read as something else unless quoted, or that need quoting or escapes.
TRICKY = ["yes", "No", "on", "OFF", "y", "~", "null", "", " ", "0x1f", "1e3", "1.0", "018", "0o17", "1_000", "+1",
          "-0", ".inf", "-.inf", ".nan", "12:30", "1:2:3", "2024-01-01", "2024-01-01 10:00:00Z", "<<", "=", "-",
          "- a", "a: b", "a #b", "#", "'", "''", '"', "\\", "a\nb", "a\n\nb\n", " a ", "a  ", "\t", "x\ty", ":",
          "a:", "[a]", "{a: 1}", "&a", "*a", "!t", "|", ">", "%x", "@x", "`x", "?", "? x", ",", "---", "...",
          "\u2028", "\x85", "\ufeff", "\x00", "\x1b", "é", "日本語", "😀", "it's", 'say "hi"', "C:\\dir",
          "psql \"$SUPABASE_DB_URL\" -f x.sql\n# or by hand:\n"]
text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=40),
    st.text(alphabet=" ab:#'\"\n-\\\t", max_size=60),
    st.integers().map(str),
    st.floats(allow_nan=False).map(str),
    st.builds(lambda a, b: f"{a} {b}", st.sampled_from(TRICKY), st.text(max_size=200)),  # long: folded lines
    st.lists(st.sampled_from(["word", "it's", "a:b", "#x", "-", "  ", "\n", "é"]), max_size=60).map(" ".join),
)
#: Keys: short (a key over 128 characters is written as a "? " complex key, which falls back).
key = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30), st.from_regex(r"[a-z_]{1,20}", fullmatch=True))
scalar = st.one_of(text, st.integers(), st.integers(-10**30, 10**30), st.floats(), st.none(), st.booleans())
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(key, inner, max_size=4)), max_leaves=12)
label = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", fullmatch=True)
meta = st.fixed_dictionaries({
    "label": label, "purpose": text, "timestamp": st.just("2026-01-02T03:04:05Z"),
    "database_version": st.sampled_from(["PostgreSQL 18.6", "PostgreSQL 15.8 (Ubuntu 15.8-1)"]),
    "supabase_version": st.one_of(st.none(), text), "type": st.sampled_from(["full", "schema-only"]),
    "size_bytes": st.integers(0, 10**13), "size_human": st.sampled_from(["2.9 kB", "1.0 GB"]),
    "tables_count": st.integers(0, 10**5), "restore_instructions": text, "notes": text, "filename": text,
    "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True), "pg_dump_version": st.sampled_from(["18.6", "17"]),
    "database": text, "host": st.sampled_from(["127.0.0.1:5432", "db.example.com:6543", "[::1]:5432"]),
    "schemas": st.lists(text, max_size=4),
    "scope": st.fixed_dictionaries({"mode": text, "excluded": st.lists(text, max_size=3),
                                    "excluded_extensions": st.lists(text, max_size=3), "supabase": st.booleans()}),
    "row_counts": st.one_of(st.none(), st.dictionaries(text, st.integers(0, 10**12), max_size=6)),
    "duration_seconds": st.floats(0, 10**6), "tool_version": st.just("0.1.0"), "protected": st.booleans(),
    "created_by": text,
}).flatmap(lambda m: st.dictionaries(key, value, max_size=4).map(lambda extra: {**m, **extra}))


@SETTINGS
@given(meta)
def test_what_write_meta_writes_is_read_exactly_and_fast(tmp_path, meta):
    store = SnapshotStore(tmp_path)
    sql = tmp_path / "20260102030405_x.sql"
    store.write_meta(sql, meta)
    path = sql.with_name(sql.name + ".meta.yaml")
    text = path.read_text(encoding="utf-8")
    expected = yaml.safe_load(text)
    assert same(yaml.load(text, Loader=_CLoader), expected)
    try:
        got = metafast.parse(text)
    except Unsupported:
        # Never for what the product writes; only for U+2028/U+2029 (written raw, read as line breaks) and
        # keys written as "? " complex keys (over 128 characters, or with line breaks).
        assert "\u2028" in text or "\u2029" in text or re.search(r"^[ -]*\? ", text, re.M), text
    else:
        assert same(got, expected), text
    assert same(load_meta(path), expected["snapshot"])


@SETTINGS
@given(meta, st.lists(st.dictionaries(st.sampled_from(["label", "purpose", "restore_instructions", "filename",
                                                       "protected", "row_counts", "schemas", "scope", "notes"]),
                                      value, min_size=1, max_size=3), min_size=1, max_size=6))
def test_files_that_differ_in_a_few_values_are_read_exactly(base, changes):
    """The second and later files of a directory are read as the lines that differ from the last one
    read in full: each must still be exactly what PyYAML reads, and handed out as its own copy."""
    dump = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    results = []
    for change in [{}, *changes, {}]:
        text = yaml.dump({"snapshot": {**base, **change}}, Dumper=dump, sort_keys=False, allow_unicode=True,
                         default_flow_style=False, width=100)
        try:
            got = metafast.parse(text)
        except Unsupported:
            continue
        assert same(got, yaml.safe_load(text)), text
        results.append(got)
    for got in results:  # nothing shared between results: changing one changes no other
        for v in got["snapshot"].values():
            if isinstance(v, dict | list):
                v.clear()
    for text in [yaml.dump({"snapshot": base}, Dumper=dump, sort_keys=False, allow_unicode=True,
                           default_flow_style=False, width=100)]:
        try:
            assert same(metafast.parse(text), yaml.safe_load(text)), text
        except Unsupported:
            pass


def test_a_real_snapshots_metadata():
    text = """snapshot:
  label: emergency-backup
  purpose: bulk price update
  timestamp: '2026-03-13T19:20:53Z'
  supabase_version: null
  type: full
  size_bytes: 2881
  restore_instructions: 'dbsage-tui restore 20260313192053_emergency-backup.sql

    # or by hand (does not drop objects created after the snapshot):

    psql "$SUPABASE_DB_URL" --single-transaction -v ON_ERROR_STOP=1 -f 20260313192053_emergency-backup.sql

    '
  notes: ''
  pg_dump_version: '18.6'
  host: 127.0.0.1:52127
  schemas:
  - public
  scope:
    mode: all-except
    excluded: []
    supabase: false
  row_counts:
    public.notes: 20
  duration_seconds: 0.109
  protected: false
"""
    assert same(metafast.parse(text), yaml.safe_load(text))


# -- hand-written YAML: the same answer or a refusal -------------------------------------------------------

ATOMS = ["a", "b c", "key", "yes", "No", "~", "null", "1", "-1", "+1", "01", "0x1f", "1e3", "1.5", "1_0", ".5",
         "2024-01-01", "12:30:00", "-", "-a", "- a", ":", "a:b", "a :b", "'", "''", "'a'", "'a''b'", '"', '"a"',
         '"\\x41"', '"\\n"', '"\\ud800"', '"\\q"', "\\", "#", "#a", "a#b", " #c", " ", "[]", "{}", "[a]", "{a: 1}",
         "&x", "*x", "!!str", "!x", "|", ">", "?", "? a", "---", "...", "%", "@", "`", ",", "é", "=", "<<", "x y",
         "'a", "b'", '"a', 'b"', "\\\"", "' a", "a '", '" a', '"a\\', '\\ b"', "\t"]
word = st.sampled_from(["a", "b", "key", "x y", "1", "yes", "é", "a-b", "a.b"])
atoms = st.one_of(word, st.sampled_from(ATOMS), st.lists(st.sampled_from(ATOMS), min_size=1, max_size=3).map("".join))


@st.composite
def block(draw, indent: int = 0, depth: int = 0) -> list[str]:
    """Lines of a YAML-ish block mapping: mostly well formed, with odd values, indentation and endings."""
    lines = []
    kinds = ["kv", "kv", "kv", "nested", "seq", "quoted", "continued", "junk"] if depth < 3 else ["kv", "quoted"]
    for _ in range(draw(st.integers(1, 4))):
        pad = " " * indent
        kind = draw(st.sampled_from(kinds))
        k = draw(st.one_of(word, word, atoms))
        if kind == "kv":
            lines.append(f"{pad}{k}{draw(st.sampled_from([': ', ': ', ':', ' : ', ':  ']))}{draw(atoms)}")
        elif kind == "nested":
            lines.append(f"{pad}{k}:")
            lines += draw(block(indent + draw(st.sampled_from([2, 2, 1, 4])), depth + 1))
        elif kind == "seq":
            lines.append(f"{pad}{k}:")
            dash = indent + draw(st.sampled_from([0, 0, 2]))
            for _ in range(draw(st.integers(1, 3))):
                if draw(st.booleans()):
                    lines.append(" " * dash + "- " + draw(atoms))
                else:
                    sub = draw(block(dash + 2, depth + 1))
                    lines += [" " * dash + "- " + sub[0].lstrip(" "), *sub[1:]]
        elif kind == "quoted":
            quote = draw(st.sampled_from(["'", '"']))
            first, *more = [draw(atoms) for _ in range(draw(st.integers(1, 4)))]
            lines.append(f"{pad}{k}: {quote}{first}")
            lines += [draw(st.sampled_from(["", " " * (indent + 2), " " * (indent + draw(st.integers(0, 3)))])) +
                      (m if draw(st.integers(0, 3)) else "") for m in more]
            lines[-1] += quote + draw(st.sampled_from(["", "", " ", " #c", "x"]))
        elif kind == "continued":
            lines.append(f"{pad}{k}: {draw(atoms)}")
            lines += [" " * (indent + draw(st.sampled_from([2, 4, 1]))) + draw(atoms)
                      for _ in range(draw(st.integers(1, 2)))]
        else:
            lines.append(" " * draw(st.integers(0, 5)) + draw(atoms))
    return lines


@settings(max_examples=1500, deadline=None)
@given(block(), st.booleans())
def test_hand_written_yaml_is_read_the_same_or_refused(lines, final_newline):
    text = "\n".join(lines) + ("\n" if final_newline else "")
    try:
        got = metafast.parse(text)
    except Unsupported:
        return
    expected = yaml.safe_load(text)  # raises if metafast accepted something that is not YAML
    assert same(got, expected), text
    assert same(yaml.load(text, Loader=_CLoader), expected)


@pytest.mark.parametrize("text", [
    "a: 1 # a comment\n", "# header\na: 1\n", "a: 1\n\nb: 2\n", "a: [1, 2]\n", "a: {b: 1}\n", "a: &x 1\nb: *x\n",
    "a: !!str 1\n", "a: !custom 1\n", "a: |\n  text\n", "a: >\n  text\n", "a: 2024-01-02\n",
    "a: 2024-01-02T03:04:05Z\n", "1: a\n", "null: a\n", "true: a\n", "? a\n: 1\n", "---\na: 1\n", "a: 1\n...\n",
    "%YAML 1.1\n---\na: 1\n", "a:\tb\n", "a: 1\r\nb: 2\r\n", "\ufeffa: 1\n", "a: \x85\n", "<<: {a: 1}\n", "a: =\n",
    "- a\n", "a\n", "", "a: \"\\ud83d\\ude00\"\n", "  a: 1\n", "a: 'x' y\n", "a:  b\n",
])
def test_odd_yaml_is_left_to_pyyaml(text):
    with pytest.raises(Unsupported):
        metafast.parse(text)


@pytest.mark.parametrize("plain", ["yes", "No", "on", "OFF", "y", "n", "~", "null", "Null", "NULL", "nULL", "true",
                                   "False", "0x1f", "0b101", "0o17", "017", "09", "1e3", "1.0e+3", "1_000", "1:30",
                                   "-1:30.5", ".5", "1.", "+1", "-0", "-0.0", ".inf", "-.Inf", ".NaN", "12:61",
                                   "0.109", "18.6", "127.0.0.1:5432", "2024-13", "a:b", "-a", "=a", "<a", "~a"])
def test_plain_scalars_resolve_as_in_pyyaml(plain):
    text = f"k: {plain}\nl:\n- {plain}\n"
    assert same(metafast.parse(text), yaml.safe_load(text))


def test_quoted_and_folded_scalars():
    for text in ["k: 'a\n\n  b\n    c\n\n\n  d  '\n", 'k: "a\\tb\\\n  \\ c\n\n  d\\x41\\u00e9\\U0001F600\\N\\_\\/"\n',
                 "k: 'it''s'\n'q''k': \"x\"\n", "k: a\n  b\n  c\nl: d\n", "k:\n- 'x\n\n  y'\n- z\n  w\n"]:
        assert same(metafast.parse(text), yaml.safe_load(text)), text


def test_every_printable_ascii_character_in_a_value():
    for c in string.printable:
        meta = {"label": f"a{c}b", "purpose": c, "notes": f"{c} {c}"}
        text = yaml.dump({"snapshot": meta}, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                         sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
        assert same(metafast.parse(text), yaml.safe_load(text)), text


def test_a_failed_attempt_leaves_the_lines_as_they_were():
    """Found by fuzzing: reading "- - x" or "- k: v" rewrites lines in place, and a first attempt that
    gave up (the file is not like the last one; the mapping does not reach the end) must not hand its
    rewritten lines to the next attempt."""
    for first, second in [("snapshot:\n  x:\n  - 1\n  y: 2\n  z: 3\n", "snapshot:\n  x:\n  - - 5\n    - 6\n  q: 3\n"),
                          ("b: 1\n", "a:\n  a:\n  - a: a\nb: a\n"),
                          ("a:\n  a: 1\n  b: 2\n  c: 3\n", "a:\n  a:\n  - k: v\nb: 1\n")]:
        metafast.parse(first)
        assert same(metafast.parse(second), yaml.safe_load(second)), second
