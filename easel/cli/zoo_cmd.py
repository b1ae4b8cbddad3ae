"""`easel zoo ...`: train and export the bundled demo model family (see docs/demo-model.md)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "zoo",
        help="train or export the demo model family",
        description="easel zoo train shapes [--stage S] [--device cuda] ... | "
        "easel zoo export shapes",
        add_help=False,
    )
    parser.add_argument(
        "zoo_args",
        nargs=argparse.REMAINDER,
        help="arguments of `python -m easel.zoo` (try: easel zoo --help)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    return run_zoo(args.zoo_args)


def run_zoo(argv: list[str]) -> int:
    from easel.zoo.cli import main

    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exits (--help, usage errors)
        return int(exc.code or 0)
