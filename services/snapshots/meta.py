"""Metadata files, ``{snapshot}.meta.yaml``: the text ``SnapshotStore.write_meta`` writes, reading it back
safely, and checking that it describes its file.

The file is YAML written so that it is also JSON (indented, keys in the writer's order): YAML 1.2 is a
superset of JSON, so any YAML reader or a person reads it as before, and a listing reads it with the
standard library's C JSON parser. Hand-edited or older block-style files are read by PyYAML's safe loader.
PyYAML is imported only for those: a listing of files dbsage-tui wrote never needs it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

from services.snapshots import compression

MAX_META_BYTES = 256 * 1024


def preload_meta_writer() -> None:
    """Import what writing metadata needs (humanize, for its sizes) now: a snapshot calls this once
    pg_dump runs, so that the import overlaps the dump instead of following it."""
    import humanize  # noqa: F401


def parse_ts(value) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def load_meta(path: Path | str) -> dict:
    """The ``snapshot:`` mapping of a metadata file, parsed safely (no custom tags, no aliases, bounded
    size); raises ValueError with the reason, which the listing shows as the snapshot's problem."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except ValueError:
        data = _yaml_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("snapshot"), dict):
        raise ValueError("metadata has no 'snapshot:' mapping")
    return data["snapshot"]


def _read_text(path: Path | str) -> str:
    # Metadata is about 1 kB: one small unbuffered read (a buffered ``open().read(limit)`` allocates the
    # whole limit for every file), then more only if the file is larger.
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ValueError("metadata file is missing") from None
    except OSError as exc:
        raise ValueError(f"metadata file unreadable ({exc.strerror or 'an I/O error'})") from None
    try:
        raw = os.read(fd, 8192)
        while 8192 <= len(raw) <= MAX_META_BYTES and (more := os.read(fd, MAX_META_BYTES + 1 - len(raw))):
            raw += more
    except OSError as exc:
        raise ValueError(f"metadata file unreadable ({exc.strerror or 'an I/O error'})") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_META_BYTES:
        raise ValueError("metadata file is too large")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("metadata file unreadable (not UTF-8 text)") from None


def _yaml_load(text: str):
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        # Aliases are how YAML bombs multiply; our metadata never uses them, so refuse any.
        if "*" in text and any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=loader)):
            raise ValueError("metadata uses YAML aliases, which snapshots never do")
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        # The parser's own words ("special characters are not allowed", "found unexpected end of stream").
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "unreadable"
        raise ValueError(f"metadata is not valid YAML ({problem})") from None


_META_TYPES = {"label": str, "type": str, "size_bytes": int, "sha256": str}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def check_meta(meta: dict, path: Path, label: str, ts: dt.datetime) -> str | None:
    """Why this metadata does not describe this file, or None."""
    name = path.name
    for key, typ in _META_TYPES.items():
        if not isinstance(value := meta.get(key), typ) or isinstance(value, bool):
            return f"metadata field {key!r} is missing or not a {typ.__name__}"
    if meta.get("filename") not in (None, name):
        return f"metadata describes another file ({meta.get('filename')})"
    if meta["label"] != label:
        return f"metadata label {meta['label']!r} does not match the file name"
    mts = parse_ts(meta.get("timestamp"))
    if mts is None:
        return "metadata timestamp is missing or not ISO 8601"
    if mts != ts:
        return "metadata timestamp does not match the file name"
    if name.endswith(".clone"):
        if meta["type"] != "clone":
            return f"metadata type {meta['type']!r} does not describe a clone snapshot"
    elif meta["type"] not in ("full", "schema-only"):
        return f"metadata type {meta['type']!r} is neither full nor schema-only"
    elif meta.get("compression", "none") != compression.method_of(name):
        return f"metadata says compression {meta.get('compression')!r}, the file name says otherwise"
    if not _SHA256_RE.fullmatch(meta["sha256"]):
        return "metadata sha256 is not a hex digest"
    return None


def meta_text(meta: dict) -> str:
    """What ``write_meta`` writes: one ``snapshot`` mapping, keys in the caller's order, as indented JSON
    (which is YAML too). A value JSON has no type for (a date a hand edit made PyYAML return) is written as
    its text, which ``parse_ts`` reads back."""
    return json.dumps({"snapshot": meta}, indent=2, ensure_ascii=False, default=str) + "\n"


def migration_text(meta: dict | None) -> str | None:
    """The newest applied Supabase migration a snapshot recorded: "20261102090000 messages"."""
    head = (meta or {}).get("migration")
    if not isinstance(head, dict) or not head.get("version"):
        return None
    return " ".join(str(x) for x in (head["version"], head.get("name")) if x)


def scope_facts(meta: dict | None) -> list[tuple[str, str]]:
    """What a restore of this snapshot touches beyond its schemas and what it leaves alone, as (field,
    text) pairs for ``show`` and the preview: the migration head, the schemas left out and why, the
    outside objects it re-creates, the default privileges it cannot set; and whether the dump crossed the
    network encrypted."""
    from services.server.catalog import Scope  # asyncpg is already imported wherever a scope is shown with its reasons
    m = meta or {}
    facts = []
    if migration := migration_text(m):
        facts.append(("Migration", migration))
    if isinstance(tls := m.get("tls"), dict):
        protocol = tls.get("protocol")
        facts.append(("TLS", f"{protocol if protocol not in (None, 'none') else 'not used'} "
                             f"(sslmode {tls.get('sslmode', '?')})"))
    scope = Scope.from_meta(m.get("schemas") or [], m.get("scope"))
    if scope.excluded:
        facts.append(("Left out", "; ".join(scope.left_out())))
    for what in m.get("outside_dependents") or []:
        facts.append(("Outside", str(what)))
    if m.get("default_privileges_left_alone"):
        facts.append(("Not ours", "default privileges of " + ", ".join(m["default_privileges_left_alone"])
                      + f" (not {m.get('role', 'the role')}'s to set)"))
    return facts
