"""`easel plugins`: list loaded plugins with version, node count and problems;
`easel plugins new NAME`: scaffold a plugin distribution."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from easel.cli.common import EXIT_OK, make_registry


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plugins", help="list plugins and their problems; scaffold a new plugin"
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(
        dest="plugins_action", metavar="ACTION", parser_class=type(parser)
    )
    new = actions.add_parser("new", help="write a new plugin distribution (easel-NAME/)")
    new.add_argument("name", help="the plugin's name (lowercase, hyphens allowed)")
    new.add_argument("--dir", default=".", help="where to write it (default: here)")
    new.set_defaults(func=run_new)
    return parser


def run_new(args: argparse.Namespace) -> int:
    from easel.cli.plugin_scaffold import scaffold

    root = scaffold(args.name, Path(args.dir))
    print(f"wrote {root}")
    print(f"next: pip install -e {root} && python -m pytest {root / 'tests'}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    registry = make_registry(args, quiet=True)
    infos = list(registry.plugins.values())
    if args.json:
        print(json.dumps([info.to_json() for info in infos], indent=2))
        return EXIT_OK
    width = max([len(i.name) for i in infos] + [6])
    print(f"{'plugin':<{width}}  {'version':<10} {'nodes':>5}  source")
    for info in infos:
        status = "" if info.ok else "  [ERROR]"
        print(
            f"{info.name:<{width}}  {info.version:<10} {len(info.nodes):>5}  {info.source}{status}"
        )
        for error in info.errors:
            print(f"{'':<{width}}  ! {error}")
        for note in info.notes:
            print(f"{'':<{width}}  - {note}")
    return EXIT_OK
