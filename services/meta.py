"""Metadata files, ``{snapshot}.meta.yaml``: reading them safely and fast, checking that one describes its
file, and the YAML text ``SnapshotStore.write_meta`` writes.

PyYAML, metafast (which uses PyYAML's resolvers) and humanize are imported on first use: a snapshot never
needs them before pg_dump starts, nor a listing answered from the cache, and they were 15-20 ms of every
command's start-up.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from . import codec

MAX_META_BYTES = 256 * 1024


def _yaml():
    """PyYAML and its C loader and dumper, imported on first use: a snapshot or a cached listing never
    needs them before its work starts, and the import is 15 ms of every command's start-up."""
    import yaml
    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader), getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def preload_meta_writer() -> None:
    """Import what writing metadata needs (PyYAML, humanize) now: a snapshot calls this once pg_dump
    runs, so that the imports overlap the dump instead of following it."""
    _yaml()
    import humanize  # noqa: F401


def preload_reader() -> None:
    """Import the metadata reader now: a listing calls this before it forks, so that the parent and the
    child do not both import it."""
    _metafast()


def _metafast():
    from . import metafast  # imports yaml's resolver: on first use, as _yaml
    return metafast


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


def load_meta(path: Path) -> dict:
    """Parse a metadata file safely (no custom tags, bounded size); raises ValueError with the reason.

    What ``write_meta`` writes is read by ``metafast`` (exactly what PyYAML returns, several times
    sooner); anything else, hand-edited or hostile, by PyYAML's safe loader."""
    return read_meta(path)[0]


def read_meta(path: Path | str) -> tuple[dict, bool]:
    """``load_meta``, and whether the result is known to survive a JSON round trip unchanged (true of
    everything ``metafast`` returns; PyYAML may return dates or non-string keys)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ValueError("metadata file is missing") from None
    except OSError as exc:
        raise ValueError(f"metadata file unreadable ({exc.__class__.__name__})") from None
    try:
        # Metadata is about 1 kB: one small read (a 256 kB one costs more in malloc than in the kernel);
        # a short read of a regular file is its end.
        raw = os.read(fd, 8192)
        if len(raw) == 8192:
            while len(raw) <= MAX_META_BYTES:
                more = os.read(fd, MAX_META_BYTES + 1 - len(raw))
                if not more:
                    break
                raw += more
    except OSError as exc:
        raise ValueError(f"metadata file unreadable ({exc.__class__.__name__})") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_META_BYTES:
        raise ValueError("metadata file is too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"metadata file unreadable ({exc.__class__.__name__})") from None
    if "\r" in text:  # as text-mode reading did: universal newlines
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    metafast = _metafast()
    try:
        data, faithful = metafast.parse(text), True
    except metafast.Unsupported:
        data, faithful = _yaml_load(text), False
    if not isinstance(data, dict) or not isinstance(data.get("snapshot"), dict):
        raise ValueError("metadata has no 'snapshot:' mapping")
    return data["snapshot"], faithful


def _yaml_load(text: str):
    yaml, _Loader, _ = _yaml()
    try:
        # Aliases are how YAML bombs multiply; our metadata never uses them, so refuse any.
        if "*" in text and any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=_Loader)):
            raise ValueError("metadata uses YAML aliases, which snapshots never do")
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ValueError(f"metadata is not valid YAML ({exc.__class__.__name__})") from None


_META_TYPES = {"label": str, "type": str, "size_bytes": int, "sha256": str}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def check_meta(meta: dict, path: Path, label: str, ts: dt.datetime) -> str | None:
    """Why this metadata does not describe this file, or None."""
    for key, typ in _META_TYPES.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            return f"metadata field {key!r} is missing or not a {typ.__name__}"
    if meta.get("filename") not in (None, path.name):
        return f"metadata describes another file ({meta.get('filename')})"
    if meta["label"] != label:
        return f"metadata label {meta['label']!r} does not match the file name"
    mts = parse_ts(meta.get("timestamp"))
    if mts is None:
        return "metadata timestamp is missing or not ISO 8601"
    if mts != ts:
        return "metadata timestamp does not match the file name"
    if path.name.endswith(".clone"):
        if meta["type"] != "clone":
            return f"metadata type {meta['type']!r} does not describe a clone snapshot"
    elif meta["type"] not in ("full", "schema-only"):
        return f"metadata type {meta['type']!r} is neither full nor schema-only"
    elif meta.get("compression", "none") != codec.method_of(path.name):
        return f"metadata says compression {meta.get('compression')!r}, the file name says otherwise"
    if not _SHA256_RE.fullmatch(meta["sha256"]):
        return "metadata sha256 is not a hex digest"
    return None


def json_faithful(value) -> bool:
    """Whether JSON gives ``value`` back unchanged: str keys only, no dates, sets or bytes."""
    if isinstance(value, dict):
        return all(type(k) is str and json_faithful(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_faithful(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def meta_text(meta: dict) -> str:
    """The YAML ``write_meta`` writes: one ``snapshot:`` mapping, keys in the caller's order."""
    yaml, _, dumper = _yaml()
    return yaml.dump({"snapshot": meta}, Dumper=dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=100)


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
    from .inspect import Scope  # asyncpg is already imported wherever a scope is shown with its reasons
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
