"""`easel models`: list the models found, by kind, and where the tokenizers come from."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from easel.cli.common import EXIT_OK, UsageError, make_registry


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the models found, by kind",
        description="List the models Easel finds, by kind (checkpoints, loras, vae, ...), with "
        "the names workflows use. --models-dir takes a models folder, a ComfyUI or "
        "A1111 install, or an extra_model_paths.yaml.",
    )
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    parser.set_defaults(func=run)
    return parser


def _size(path: Path) -> int:
    """Bytes of a file, or of every file in a model folder (stat only, nothing is opened)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def listing() -> dict[str, Any]:
    """What `--json` prints: the roots, the models of each kind, the tokenizer sources."""
    from easel.models import discovery, model_paths, tokenizers

    roots = discovery.model_roots()
    kinds: dict[str, list[dict[str, Any]]] = {}
    for kind in model_paths.all_kinds():
        rows = []
        for name, entry in sorted(discovery.entries(kind, roots).items()):
            path = discovery.resolve(kind, name, roots)
            row: dict[str, Any] = {
                "name": name,
                "format": entry.file_format,
                "size": _size(path),
                "path": str(path),
            }
            if entry.parts and path == entry.path:
                row["parts"] = list(entry.parts)
            rows.append(row)
        kinds[kind] = rows
    found = {}
    for family, find in (
        ("clip", tokenizers.find_clip_tokenizer),
        ("t5", tokenizers.find_t5_tokenizer),
    ):
        folder, where = find(roots)
        found[family] = {"path": str(folder), "source": where} if folder is not None else None
    return {
        "roots": [{"path": str(r), "exists": r.exists()} for r in roots],
        "folders": [
            {"kind": f.kind, "path": str(f.path)}
            for f in discovery.kind_folders(None, roots)
            if f.path.is_dir()
        ],
        "kinds": kinds,
        "tokenizers": found,
    }


def run(args: argparse.Namespace) -> int:
    from easel.models.errors import ModelError

    make_registry(args)  # plugins may add kinds of model (register_model_kinds)
    try:
        report = listing()
    except ModelError as exc:  # an unreadable config file or extra_model_paths.yaml
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print("roots (first wins):")
    for root in report["roots"]:
        print(f"  {root['path']}" + ("" if root["exists"] else "  (missing)"))
    for kind, rows in report["kinds"].items():
        if not rows:
            print(f"{kind}: none")
            continue
        print(f"{kind} ({len(rows)}):")
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            extra = f"  [{', '.join(row['parts'])}]" if row.get("parts") else ""
            print(f"  {row['name']:<{width}}  {row['format']:<11}  {_human(row['size']):>9}{extra}")
    print("tokenizers (for single-file checkpoints):")
    for family, found in report["tokenizers"].items():
        label = "CLIP" if family == "clip" else "T5"
        print(
            f"  {label}: "
            + (found["source"] if found else "not found (see docs/models.md, 'Tokenizers')")
        )
    return EXIT_OK
