"""`easel plugins`: list loaded plugins with version, node count and problems."""

from __future__ import annotations

import argparse
import json
from typing import Any

from easel.cli.common import EXIT_OK, make_registry


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("plugins", help="list plugins and their problems")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    registry = make_registry(args, quiet=True)
    infos = list(registry.plugins.values())
    if args.json:
        print(json.dumps([{
            "name": i.name, "version": i.version, "source": i.source, "nodes": i.nodes,
            "socket_types": i.socket_types, "errors": i.errors,
            "web_assets": str(i.web_assets) if i.web_assets else None,
        } for i in infos], indent=2))
        return EXIT_OK
    width = max([len(i.name) for i in infos] + [6])
    print(f"{'plugin':<{width}}  {'version':<10} {'nodes':>5}  source")
    for info in infos:
        status = "" if info.ok else "  [ERROR]"
        print(f"{info.name:<{width}}  {info.version:<10} {len(info.nodes):>5}  "
              f"{info.source}{status}")
        for error in info.errors:
            print(f"{'':<{width}}  ! {error.splitlines()[0]}")
    return EXIT_OK
