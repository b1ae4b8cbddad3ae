"""`easel run`: run a workflow file (Easel, ComfyUI or a PNG with one embedded)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from easel.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    make_executor,
    make_registry,
    parse_value,
)
from easel.cli.progress import ProgressPrinter
from easel.core.context import CancelToken
from easel.workflow_files import default_workflow_path, read_workflow


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run", help="run a workflow",
        description="Run a workflow file: Easel JSON, ComfyUI JSON (API or UI format), or a "
                    "PNG made by Easel or ComfyUI. With no file, runs the default workflow.",
    )
    parser.add_argument("workflow", nargs="?", help="workflow file (default: "
                        "workflows/text_to_image.json)")
    add_run_options(parser)
    parser.set_defaults(func=run)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                        help="override an input (JSON value or plain text), repeatable")
    parser.add_argument("--output-dir", default="output", metavar="DIR",
                        help="where output files go (default: ./output)")
    parser.add_argument("--checkpoint", metavar="NAME",
                        help="make every checkpoint loader use model NAME")
    parser.add_argument("--target", action="append", metavar="NODE",
                        help="run only what this node needs (default: every output node)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="run up to N independent nodes at once (default 1)")
    parser.add_argument("--cache-size", default="2GB", help="in-memory cache bound")
    parser.add_argument("--disk-cache", action="store_true",
                        help="also keep node outputs on disk across processes")
    parser.add_argument("--cache-dir", metavar="DIR", help="disk cache folder "
                        "(default: the user cache folder)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def load_workflow(args: argparse.Namespace) -> dict[str, Any]:
    """The workflow named on the command line with --set and --checkpoint applied."""
    path = Path(args.workflow) if args.workflow else default_workflow_path()
    workflow = read_workflow(path)
    apply_overrides(workflow, args.set, getattr(args, "checkpoint", None))
    return workflow


def apply_overrides(workflow: dict[str, Any], sets: list[str], checkpoint: str | None) -> None:
    nodes = workflow.get("nodes")
    if not isinstance(nodes, dict):
        return  # validation reports it
    for item in sets:
        target, sep, text = item.partition("=")
        node_id, dot, input_name = target.rpartition(".")
        if not sep or not dot or not node_id or not input_name:
            raise UsageError(f"--set {item!r}: expected NODE.INPUT=VALUE")
        node = nodes.get(node_id)
        if not isinstance(node, dict):
            known = ", ".join(sorted(nodes)) or "none"
            raise UsageError(f"--set {item!r}: no node {node_id!r} in the workflow "
                             f"(nodes: {known})")
        value = parse_value(text)
        if isinstance(value, list):
            value = {"value": value}
        node.setdefault("inputs", {})[input_name] = value
    if checkpoint:
        for node in nodes.values():
            if isinstance(node, dict) and node.get("type") == "CheckpointLoader":
                node.setdefault("inputs", {})["name"] = checkpoint


def run(args: argparse.Namespace) -> int:
    workflow = load_workflow(args)
    registry = make_registry(args)
    executor = make_executor(args, registry)
    plan = executor.validate(workflow, args.target)
    printer = ProgressPrinter(quiet=args.quiet)
    token = CancelToken()
    try:
        result = executor.run(plan, on_event=printer, cancel=token,
                              services={"workflow": workflow})
    except KeyboardInterrupt:
        token.cancel("interrupted")
        print("interrupted", file=sys.stderr)
        return 130
    files = [str(executor.output_dir / f) for ui in result.ui.values()
             if isinstance(ui, dict) for f in ui.get("files", [])]
    if args.json:
        print(json.dumps({
            "run_id": result.run_id, "status": result.status, "seconds": result.seconds,
            "nodes": result.node_status, "ui": result.ui, "files": files,
            "errors": [{"node": f.node, "node_type": f.node_type, "input": f.input,
                        "message": f.message} for f in result.failures],
        }, indent=2, default=str))
    else:
        for file in files:
            print(file)
    for failure in result.failures:
        print(f"error: {failure}", file=sys.stderr)
    return EXIT_OK if result.status == "succeeded" else EXIT_FAILED
