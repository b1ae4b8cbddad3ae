"""The batch manifest: JSON Lines, a header line then one line per item, in item order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HEADER = "easel.batch"


def write_manifest(path: Path, header: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Write the whole manifest atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": HEADER, **header}) + "\n")
        for result in sorted(results, key=lambda r: r["index"]):
            handle.write(json.dumps({"type": "item", **result}, default=str) + "\n")
    tmp.replace(path)


def append_item(path: Path, result: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": "item", **result}, default=str) + "\n")


def read_manifest(path: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """(header, {index: last result line for that item})."""
    header: dict[str, Any] = {}
    items: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read manifest {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # a line cut short by a crash: that item simply runs again
            raise ValueError(f"{path}:{number}: not a JSON line") from None
        kind = record.pop("type", None)
        if kind == HEADER:
            header = record
        elif kind == "item":
            items[int(record["index"])] = record
    if not header:
        raise ValueError(f"{path} is not an Easel batch manifest (no header line)")
    return header, items
