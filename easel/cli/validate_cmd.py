"""`easel validate`: check a workflow without running it."""

from __future__ import annotations

import argparse
from typing import Any

from easel.cli.common import EXIT_OK, make_executor, make_registry
from easel.cli.run_cmd import load_workflow


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("validate", help="check a workflow without running it")
    parser.add_argument("workflow", nargs="?", help="workflow file (default: the default workflow)")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    parser.add_argument("--checkpoint", metavar="NAME")
    parser.add_argument("--target", action="append", metavar="NODE")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    workflow = load_workflow(args)
    registry = make_registry(args)
    plan = make_executor(args, registry).validate(workflow, args.target)
    total = len(workflow.get("nodes", {}))
    print(f"ok: {total} nodes, {len(plan.order)} needed for {len(plan.targets)} output(s)")
    return EXIT_OK
