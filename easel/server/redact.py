"""Client-facing messages without this machine's absolute paths (the server log keeps them)."""

from __future__ import annotations

import re

# An absolute POSIX path of two parts or more, or a Windows drive path.
_ABSOLUTE = re.compile(r"(?<![\w.:/>])(?:/[^\s/'\"<>|:,;()]+){2,}/?|[A-Za-z]:\\[^\s'\"<>|,;()]+")


def redact_paths(message: str, roots: tuple[str, ...] = ()) -> str:
    """`message` with known folders shown by name (`<input>/x.png`) and any other absolute
    path cut to its last part (`.../x.png`)."""
    for root, label in sorted(
        ((r, f"<{n}>") for n, r in _named(roots)), key=lambda item: -len(item[0])
    ):
        message = message.replace(root.rstrip("/") + "/", label + "/").replace(root, label)
    return _ABSOLUTE.sub(_shorten, message)


def _named(roots: tuple[str, ...]) -> list[tuple[str, str]]:
    """Roots are given as 'name=path' (or a bare path, shown as <server>)."""
    named = []
    for item in roots:
        name, _, path = item.partition("=") if "=" in item else ("server", "", item)
        if path and path != "/":
            named.append((name, path))
    return named


def _shorten(match: re.Match[str]) -> str:
    path = match.group(0).rstrip("/\\")
    last = re.split(r"[/\\]", path)[-1]
    return f".../{last}" if last else "..."
