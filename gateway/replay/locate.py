"""Map a msgspec validation path (``$.caller[2].ms``) back to a line of the TOML source.

Theory of operation. msgspec reports *where* in the decoded object a value was wrong, as a path of
keys and list indices; the scenario's author needs the *line*. TOML is line oriented, so a single
pass over the source is enough: table headers (``[expect]``, ``[[caller]]``, ``[model.x]``) set the
current table path, array-of-tables headers count their occurrences (per parent element), and each
``key = value`` line contributes the path of that key. The error's line is the line whose path is the
longest prefix of the error's path: a wrong value lands on its key, a missing field lands on the
table header, a wrong list element lands on the list's key.

The scanner understands the TOML this project writes (headers, bare/quoted/dotted keys, inline
tables and multi-line arrays/strings as opaque values); it never raises. Unknown input maps to line 1.
Synchronous and pure.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["line_of_path", "parse_path"]

type PathPart = str | int

_PATH_PART: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\.`([^`]*)`")
_HEADER: Final = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY: Final = re.compile(
    r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def parse_path(path: str) -> tuple[PathPart, ...]:
    """Split a msgspec error path (``$.caller[2].ms``) into keys and indices."""
    parts: list[PathPart] = []
    rest = path[1:] if path.startswith("$") else path
    for match in _PATH_PART.finditer(rest):
        key, index, quoted = match.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(key if key is not None else quoted)
    return tuple(parts)


def _split_dotted(text: str) -> list[str]:
    """Split a dotted TOML key into its parts, unquoting quoted parts."""
    raws: list[str] = re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", text)
    return [raw[1:-1] if raw[0] in "\"'" else raw for raw in raws]


def _indexed_table_lines(source: str) -> dict[tuple[PathPart, ...], int]:
    """Return ``{path: first line number}`` for every header and key in ``source``."""
    lines: dict[tuple[PathPart, ...], int] = {}
    table: tuple[PathPart, ...] = ()
    # Per array-of-tables path (with the indices of its parents): how many elements so far.
    counts: dict[tuple[PathPart, ...], int] = {}
    in_multiline: str | None = None
    bracket_depth = 0
    for number, line in enumerate(source.splitlines(), start=1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if bracket_depth > 0:
            bracket_depth += _bracket_delta(line)
            continue
        header = _HEADER.match(line)
        if header is not None and _KEY.match(line) is None:
            is_array = header.group(1) == "[["
            names = _split_dotted(header.group(2))
            table = _resolve_table(names, counts, is_array=is_array)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        path = table + tuple(_split_dotted(key.group(1)))
        lines.setdefault(path, number)
        value = line[key.end() :]
        for quote in ('"""', "'''"):
            if value.count(quote) % 2 == 1:
                in_multiline = quote
        if in_multiline is None:
            bracket_depth = max(0, _bracket_delta(value))
    return lines


def _resolve_table(
    names: list[str],
    counts: dict[tuple[PathPart, ...], int],
    *,
    is_array: bool,
) -> tuple[PathPart, ...]:
    """Turn a header's dotted names into a path, inserting array indices of enclosing arrays."""
    path: tuple[PathPart, ...] = ()
    for position, name in enumerate(names):
        path += (name,)
        last = position == len(names) - 1
        if last and is_array:
            index = counts.get(path, 0)
            counts[path] = index + 1
            path += (index,)
        elif path in counts:
            # A parent that is an array of tables: the header refers to its latest element.
            path += (counts[path] - 1,)
    return path


def _bracket_delta(text: str) -> int:
    """Net count of opening minus closing brackets/braces outside strings and comments."""
    depth = 0
    quote: str | None = None
    for char in text:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth


def line_of_path(source: str, path: str | tuple[PathPart, ...], *, field: str | None = None) -> int:
    """Return the 1-based line of ``source`` that best matches a msgspec error path.

    Args:
        source: the TOML text that was decoded.
        path: the error's path, as msgspec prints it (``$.caller[2].ms``) or already split.
        field: an extra key to look for under ``path`` (msgspec names an unknown field in the
            message, not in the path).
    """
    parts = parse_path(path) if isinstance(path, str) else path
    if field is not None:
        parts = (*parts, field)
    lines = _indexed_table_lines(source)
    for length in range(len(parts), 0, -1):
        found = lines.get(parts[:length])
        if found is not None:
            return found
    return 1
