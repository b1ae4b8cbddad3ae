"""`easel nodes`: list the node types the loaded plugins provide."""

from __future__ import annotations

import argparse
import json
from typing import Any

from easel.cli.common import EXIT_OK, make_registry


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("nodes", help="list node types")
    parser.add_argument("--json", action="store_true", help="print every node's schema as JSON")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    registry = make_registry(args)
    schemas = registry.schemas()
    if args.json:
        print(json.dumps(schemas, indent=2, default=str))
        return EXIT_OK
    by_category: dict[str, list[dict[str, Any]]] = {}
    for schema in schemas.values():
        by_category.setdefault(schema["category"], []).append(schema)
    for category in sorted(by_category):
        print(f"{category}:")
        for schema in by_category[category]:
            ins = ", ".join(f"{n}: {s['type']}" for n, s in schema["inputs"].items())
            outs = ", ".join(f"{n}: {t}" for n, t in schema["outputs"].items()) or "-"
            summary = schema["description"].splitlines()[0] if schema["description"] else ""
            print(f"  {schema['type']}({ins}) -> {outs}")
            if summary:
                print(f"      {summary}")
    return EXIT_OK
