"""An exact, fast reader for the YAML that ``SnapshotStore.write_meta`` writes, and nothing more.

PyYAML builds a Python object per node and resolves every scalar in Python, about 150 µs for one of our
metadata files even with the C parser: 1.5 s of a cold ``list`` of 10,000 snapshots. Our files use a small
part of YAML (block mappings and sequences, plain and quoted scalars, ``[]`` and ``{}``), so this module
reads that part directly and returns what ``yaml.safe_load`` returns for it.

It is a front door, not a second YAML implementation: ``parse`` raises ``Unsupported`` for any line it does
not fully understand (comments, flow collections, anchors, aliases, tags, block scalars, complex keys,
blank lines between entries, tabs, odd line breaks, non-printable characters, unquoted timestamps, keys
that are not strings, surrogate escapes ...) and the caller then uses the real loader. Plain scalars are
resolved with PyYAML's own implicit resolvers and constructors, so ``yes``, ``0x1f``, ``1e3`` or ``~`` mean
what they mean to PyYAML. The result only ever holds str keys and str/int/float/bool/None/list/dict values,
so it survives a JSON round trip unchanged (the listing cache relies on that).
"""

from __future__ import annotations

import re

from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver


class Unsupported(Exception):
    """The text uses YAML this reader does not handle: use the real loader."""


#: Anything the YAML reader rejects or treats as a line break (\r, \x85, \u2028, \u2029), tabs, a BOM, and
#: C1 controls or surrogates: all possible in YAML, none in what our dumper writes.
_ODD_CHARS = re.compile("[^\n -~\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
#: Characters that cannot start a plain scalar or a plain key. "-", "?" and ":" can, when a non-space
#: follows ("-1", ":0"): see _INDICATORS.
_BAD_FIRST = frozenset(" ,[]{}#&*!|>'\"%@`")
_INDICATORS = frozenset("-?:")
#: A single-quoted scalar's body on one line ('' is a quote) and a double-quoted one's (\x is an escape).
_SQ_BODY = re.compile(r"(?:[^']|'')*")
_DQ_BODY = re.compile(r'(?:[^"\\]|\\.)*')
#: A double-quoted scalar's escapes, escaped line breaks and line breaks (with the spaces around them:
#: one break folds to a space, n > 1 breaks to n - 1 newlines, as in YAML 1.1 flow scalars).
_DQ_TOKEN = re.compile(r'\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(\n[ \n]*)|(.))|( *\n[ \n]*)',
                       re.S)
_ESCAPES = {"0": "\x00", "a": "\x07", "b": "\x08", "t": "\t", "\t": "\t", "n": "\n", "v": "\x0b", "f": "\x0c",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "\\": "\\", "/": "/", "N": "\x85", "_": "\xa0",
            "L": "\u2028", "P": "\u2029"}

_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVERS = Resolver.yaml_implicit_resolvers
_CONSTRUCT = SafeConstructor()
#: Tags whose values this reader builds with PyYAML's own constructor; any other (timestamp, merge,
#: value, ...) means Unsupported. Timestamps are left out because JSON cannot carry them.
_SCALAR_TAGS = {"tag:yaml.org,2002:null": _CONSTRUCT.construct_yaml_null,
                "tag:yaml.org,2002:bool": _CONSTRUCT.construct_yaml_bool,
                "tag:yaml.org,2002:int": _CONSTRUCT.construct_yaml_int,
                "tag:yaml.org,2002:float": _CONSTRUCT.construct_yaml_float}
#: Plain scalars seen before, each a complete one-line value, and what they resolved to ("full", "null",
#: "false", "public", ...); and plain keys seen before. Bounded: most values in a directory repeat.
_plain_cache: dict[str, object] = {}
_key_cache: dict[int, dict[str, str]] = {}  # by indentation: {"  label": "label", ...}
_CACHE_MAX = 4096
_MISSING = object()
_MAX_KEY = 512  # YAML refuses simple keys over 1024 characters; ours are short


def parse(text: str):
    """What ``yaml.safe_load(text)`` returns, for a block mapping as ``write_meta`` writes it.

    Raises Unsupported when the text is outside that subset (the caller then uses PyYAML, which also
    produces the proper error for text that is not YAML at all)."""
    if _ODD_CHARS.search(text):
        raise Unsupported("unusual characters")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or lines[0][:1] in ("", " "):
        raise Unsupported("not a block mapping at column 0")
    if "\n---" in text or "\n..." in text or text.startswith(("---", "...")):
        raise Unsupported("a document marker, or a line that looks like one")
    # Each attempt gets its own copy of the lines: _sequence rewrites "- k: v" lines as it reads them.
    template = _template
    if template is not None and len(lines) == len(template.lines) and lines[0] == template.lines[0]:
        value = template.parse_like(lines[:])
        if value is not None:
            return value
    if len(lines) > 1 and lines[0][-1:] == ":" and lines[1][:1] == " " and lines[1].lstrip(" ")[:2] != "- ":
        # "key:" and a mapping below it, as "snapshot:" is: parse it noting where its entries start, so
        # that the next file can be read as the lines that differ from this one.
        original = lines[:]
        entry = _entry(lines, 0, 0, _key_cache.setdefault(0, {}))
        if entry is not None and entry[1] == "":
            indent = len(lines[1]) - len(lines[1].lstrip(" "))
            starts: list[int] = []
            inner, i = _mapping(lines, 1, indent, starts)
            if i == len(lines):
                if len(starts) == len(inner):  # no key given twice
                    _set_template(_Template(original, entry[0], indent, starts, inner))
                return {entry[0]: inner}
        lines = original
    value, i = _mapping(lines, 0, 0)
    if i != len(lines):
        raise Unsupported(f"line {i + 1}")
    return value


class _Template:
    """The last file read in full that is one "key:" with a mapping below it, and where each of that
    mapping's entries starts. Files written by the same program differ from it in a few values (label,
    timestamp, filename, ...), so ``parse_like`` reads only the entries whose lines differ and copies the
    rest; any doubt (an entry that now ends elsewhere, or has another key) and it returns None for a full
    parse."""

    def __init__(self, lines: list[str], key: str, indent: int, starts: list[int], inner: dict) -> None:
        self.lines = lines
        self.key = key
        self.indent = indent
        self.starts = starts
        self.ends = [*starts[1:], len(lines)]
        self.keys = list(inner)
        self.values = [_copy(v) for v in inner.values()]  # never handed out: copies are
        self.containers = [s for s, v in enumerate(self.values) if type(v) in (dict, list)]
        self.owner = [-1] * len(lines)  # the entry each line belongs to
        for s, (start, end) in enumerate(zip(starts, self.ends, strict=True)):
            self.owner[start:end] = [s] * (end - start)

    def parse_like(self, lines: list[str]) -> dict | None:
        old, owner = self.lines, self.owner
        touched = sorted({owner[j] for j in range(1, len(lines)) if lines[j] != old[j]})
        inner = dict(zip(self.keys, self.values, strict=True))
        keys, starts, ends = self.keys, self.starts, self.ends
        k = 0
        while k < len(touched):  # each run of entries with changed lines, read again as a mapping
            first = last = touched[k]
            k += 1
            while k < len(touched) and touched[k] == last + 1:
                last = touched[k]
                k += 1
            part, end = _mapping(lines, starts[first], self.indent, stop=ends[last])
            if end != ends[last] or list(part) != keys[first:last + 1]:
                return None
            inner.update(part)
        for s in self.containers:
            if s not in touched:
                inner[keys[s]] = _copy(self.values[s])
        return {self.key: inner}


_template: _Template | None = None


def _set_template(template: _Template) -> None:
    global _template
    _template = template


def _copy(value):
    """A copy of parsed YAML down to its scalars (which are immutable)."""
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) for v in value]
    return value


def _mapping(lines: list[str], i: int, indent: int, starts: list[int] | None = None,
             stop: int | None = None) -> tuple[dict, int]:
    """The block mapping whose keys start at column ``indent`` on line ``i``; returns it and the next line.

    The loop is the hot path (25 lines a file, 10,000 files): a line whose key (with its indentation) was
    seen before and whose value was seen before, or is a one-line quoted string without quotes inside,
    costs a few string operations. Any other line goes through ``_entry``, which checks every rule."""
    out: dict = {}
    n = len(lines) if stop is None else stop
    deeper = " " * (indent + 1)
    keys = _key_cache.setdefault(indent, {})
    values = _plain_cache
    while i < n:
        if starts is not None:
            starts.append(i)
        raw, sep, rest = lines[i].partition(": ")
        key = keys.get(raw if sep else raw[:-1] if raw[-1:] == ":" else None)
        if key is not None:
            if rest and not (i + 1 < n and lines[i + 1].startswith(deeper)):
                value = values.get(rest, _MISSING)
                if value is not _MISSING:
                    out[key] = value
                    i += 1
                    continue
                if rest[0] == "'" and rest[-1] == "'" and len(rest) > 1 and "'" not in rest[1:-1]:
                    out[key] = rest[1:-1]
                    i += 1
                    continue
            out[key], i = _value(lines, i, indent, rest)
            continue
        entry = _entry(lines, i, indent, keys)
        if entry is None:
            if starts is not None:
                starts.pop()
            break
        out[entry[0]], i = _value(lines, i, indent, entry[1])
    return out, i


def _entry(lines: list[str], i: int, indent: int, keys: dict[str, str]) -> tuple[str, str] | None:
    """The key of the mapping entry on line ``i`` and the text after its ': ', every rule checked; None
    when the line belongs to an enclosing collection. Plain keys are remembered in ``keys``."""
    line = lines[i]
    body = line.lstrip(" ")
    ind = len(line) - len(body)
    if ind != indent:
        if ind < indent and body:
            return None  # a line less indented: the end of this mapping
        raise Unsupported(f"line {i + 1}: indentation")
    first = body[:1]
    if first == "'" or first == '"':
        key, colon = _quoted_key(body, i)
    else:
        colon = body.find(": ")
        if colon < 0:
            if body[-1:] != ":":
                raise Unsupported(f"line {i + 1}: not a key")
            colon = len(body) - 1
        raw = body[:colon]
        if not raw or first in _BAD_FIRST or raw[-1] == " " or " #" in raw or len(raw) > _MAX_KEY or \
                (first in _INDICATORS and raw[1:2] in ("", " ")):
            raise Unsupported(f"line {i + 1}: key")
        key = _plain(raw)
        if type(key) is str and len(keys) < _CACHE_MAX:
            keys[line[:indent + colon]] = key
    if type(key) is not str:
        raise Unsupported(f"line {i + 1}: key is not a string")
    return key, body[colon + 2:]


def _sequence(lines: list[str], i: int, indent: int) -> tuple[list, int]:
    """The block sequence whose dashes are at column ``indent`` from line ``i``."""
    out = []
    n = len(lines)
    pad = " " * (indent + 2)
    while i < n:
        line = lines[i]
        body = line.lstrip(" ")
        ind = len(line) - len(body)
        if ind != indent or body[:2] != "- ":
            if ind < indent and body or ind == indent and body != "-":
                return out, i  # the end of this sequence (an indentless one ends at its parent's next key)
            raise Unsupported(f"line {i + 1}: sequence entry")
        rest = body[2:]
        first = rest[:1]
        if first == "-" and rest[1:2] == " ":  # "- - x": a sequence in a sequence, starting at indent + 2
            lines[i] = pad + rest
            item, i = _sequence(lines, i, indent + 2)
        elif _is_key(rest):  # "- k: v": a mapping item
            lines[i] = pad + rest
            item, i = _mapping(lines, i, indent + 2)
        else:
            item, i = _value(lines, i, indent, rest, True)
        out.append(item)
    return out, i


def _is_key(rest: str) -> bool:
    """Whether a sequence entry ``rest`` starts with a mapping key ("k: v", "k:", "'k': v")."""
    first = rest[:1]
    if first == "'" or first == '"':
        end = (_SQ_BODY if first == "'" else _DQ_BODY).match(rest, 1).end()
        return rest[end:end + 2] == first + ":" and rest[end + 2:end + 3] in ("", " ")
    return ": " in rest or rest[-1:] == ":"


def _value(lines: list[str], i: int, indent: int, rest: str, in_seq: bool = False):
    """The value that starts with ``rest`` on line ``i`` (after "key: " or "- "), in a collection at column
    ``indent``; returns it and the line after it."""
    if rest == "":  # "key:" then a nested block, or nothing at all (null)
        if in_seq:
            raise Unsupported(f"line {i + 1}: empty sequence entry")
        j = i + 1
        if j < len(lines):
            nxt = lines[j]
            body = nxt.lstrip(" ")
            ind = len(nxt) - len(body)
            if body[:2] == "- " and ind >= indent:  # a sequence, indentless (ind == indent) or not
                return _sequence(lines, j, ind)
            if ind > indent and body:
                return _mapping(lines, j, ind)
        return None, j
    first = rest[0]
    if first == "'" or first == '"':
        return _quoted_value(lines, i, indent, rest)
    if rest == "[]":
        return [], i + 1
    if rest == "{}":
        return {}, i + 1
    if first in _BAD_FIRST or rest[-1] == " " or rest[-1] == ":" or " #" in rest or ": " in rest or \
            (first in _INDICATORS and rest[1:2] in ("", " ")):
        raise Unsupported(f"line {i + 1}: value")
    # A plain scalar continues on every following line indented deeper than its collection.
    j = i + 1
    n = len(lines)
    parts = None
    deeper = " " * (indent + 1)
    while j < n and lines[j].startswith(deeper):
        body = lines[j].strip(" ")
        if not body or body[0] == "#" or body[-1] == ":" or " #" in body or ": " in body:
            raise Unsupported(f"line {j + 1}: plain continuation")
        if parts is None:
            parts = [rest]
        parts.append(body)
        j += 1
    if parts is not None:
        return _plain(" ".join(parts)), j
    value = _plain(rest)
    if len(rest) <= 40 and len(_plain_cache) < _CACHE_MAX:
        _plain_cache[rest] = value
    return value, j


def _plain(value: str):
    """A plain scalar as PyYAML resolves and constructs it (str, None, bool, int or float)."""
    try:
        return _plain_cache[value]
    except KeyError:
        pass
    tag = _STR_TAG
    for rtag, regexp in [*_RESOLVERS.get(value[:1] if value else "", ()), *_RESOLVERS.get(None, ())]:
        if regexp.match(value):  # exactly Resolver.resolve for a plain scalar
            tag = rtag
            break
    if tag == _STR_TAG:
        result = value
    else:
        construct = _SCALAR_TAGS.get(tag)
        if construct is None:
            raise Unsupported(f"plain scalar resolves to {tag}")
        result = construct(ScalarNode(tag, value))
    return result


def _quoted_key(body: str, i: int) -> tuple[str, int]:
    """A quoted key on one line, and the position of the ':' after it."""
    m = (_SQ_BODY if body[0] == "'" else _DQ_BODY).match(body, 1)
    end = m.end()
    if end >= len(body) or body[end] != body[0] or body[end + 1:end + 2] != ":" or end > _MAX_KEY or \
            body[end + 2:end + 3] not in ("", " "):
        raise Unsupported(f"line {i + 1}: quoted key")
    raw = body[1:end]
    return (raw.replace("''", "'") if body[0] == "'" else _unescape(raw, i)), end + 1


def _quoted_value(lines: list[str], i: int, indent: int, rest: str) -> tuple[str, int]:
    """A single- or double-quoted scalar starting at ``rest`` on line ``i``, possibly over several lines
    (each indented deeper than the collection); nothing may follow the closing quote."""
    quote = rest[0]
    body_re = _SQ_BODY if quote == "'" else _DQ_BODY
    chunks = []
    frag, start, j = rest, 1, i
    pad = " " * (indent + 1)
    while True:
        if quote in frag[start:]:  # else the whole line is inside the scalar
            end = body_re.match(frag, start).end()
            if end < len(frag) and frag[end] == quote:
                if end + 1 != len(frag):
                    raise Unsupported(f"line {j + 1}: text after a quoted scalar")
                chunks.append(frag[start:end])
                break
        if quote == '"':
            end = body_re.match(frag, start).end()
            if end < len(frag) - 1:  # the body stops before the end only at a "\" ending the line
                raise Unsupported(f"line {j + 1}: quoted scalar")
        chunks.append(frag[start:])
        j += 1
        if j >= len(lines):
            raise Unsupported("unterminated quoted scalar")
        frag, start = lines[j], 0
        if not frag.startswith(pad) and frag.strip(" "):
            raise Unsupported(f"line {j + 1}: quoted scalar continues at a lower indentation")
    if quote == '"':
        return _unescape("\n".join(chunks), i), j + 1
    if len(chunks) == 1:
        return chunks[0].replace("''", "'"), j + 1
    return _fold_lines(chunks).replace("''", "'"), j + 1


def _fold_lines(chunks: list[str]) -> str:
    """Lines of a quoted scalar joined as YAML folds them: spaces around a line break are dropped, one
    break becomes a space, n > 1 breaks (n - 1 blank lines) become n - 1 newlines."""
    out = [chunks[0].rstrip(" ")]
    blanks = 0
    for chunk in chunks[1:-1]:
        chunk = chunk.strip(" ")
        if chunk:
            out.append("\n" * blanks if blanks else " ")
            out.append(chunk)
            blanks = 0
        else:
            blanks += 1
    out.append("\n" * blanks if blanks else " ")
    out.append(chunks[-1].lstrip(" "))
    return "".join(out)


def _fold(m: re.Match) -> str:
    breaks = m.group().count("\n")
    return " " if breaks == 1 else "\n" * (breaks - 1)


def _unescape(raw: str, i: int) -> str:
    """The body of a double-quoted scalar: escapes decoded and line breaks folded as PyYAML does."""
    if "\\" not in raw and "\n" not in raw:
        return raw

    def token(m: re.Match) -> str:
        hex2, hex4, hex8, escaped_break, char, breaks = m.groups()
        if breaks is not None:
            return _fold(m)
        if escaped_break is not None:  # "\" at the end of a line: no space, but blank lines still count
            return "\n" * (escaped_break.count("\n") - 1)
        if char is not None:
            if char not in _ESCAPES:
                raise Unsupported(f"line {i + 1}: unknown escape")
            return _ESCAPES[char]
        code = int(hex2 or hex4 or hex8, 16)
        if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:  # PyYAML and libyaml disagree about these
            raise Unsupported(f"line {i + 1}: escape outside Unicode scalar values")
        return chr(code)

    return _DQ_TOKEN.sub(token, raw)
