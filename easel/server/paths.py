"""Resolving client-given names strictly inside the server's own folders."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()+-]{0,127}$")


def inside(root: Path, relative: str) -> Path | None:
    """`root/relative` if it stays inside `root` (after resolving links), else None."""
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
        return None
    if any(part.startswith(".") for part in pure.parts):
        return None  # hidden files and temporary files being written
    root = root.resolve()
    candidate = (root / pure).resolve()
    if candidate == root or not candidate.is_relative_to(root):
        return None
    return candidate


def safe_file_name(name: str) -> str | None:
    """`name` if it is a plain file name (no folders, no leading dot), else None."""
    name = name.strip()
    if not _SAFE_NAME.match(name) or ".." in name:
        return None
    return name


def clean_file_name(name: str, fallback: str = "upload") -> str:
    """A plain file name made from a client's name (folders dropped, odd characters replaced)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9 _.()+-]", "_", base).strip(" .")
    base = re.sub(r"\.{2,}", ".", base)
    base = re.sub(r"^[^A-Za-z0-9]+", "", base)
    return base[:100] or fallback
