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
from easel.core.plugins import Registry, current_registry
from easel.core.roles import checkpoint_inputs
from easel.workflow_edit import EditError, set_input
from easel.workflow_files import default_workflow_path, read_workflow


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run",
        help="run a workflow",
        description="Run a workflow file: Easel JSON, ComfyUI JSON (API or UI format), or a "
        "PNG made by Easel or ComfyUI. With no file, runs the default workflow.",
    )
    parser.add_argument(
        "workflow", nargs="?", help="workflow file (default: workflows/text_to_image.json)"
    )
    add_run_options(parser)
    parser.set_defaults(func=run)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="override an input (JSON value or plain text), repeatable",
    )
    parser.add_argument(
        "--output-dir",
        default="output",
        metavar="DIR",
        help="where output files go (default: ./output)",
    )
    parser.add_argument(
        "--checkpoint", metavar="NAME", help="make every checkpoint loader use model NAME"
    )
    parser.add_argument(
        "--target",
        action="append",
        metavar="NODE",
        help="run only what this node needs (default: every output node)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="run up to N independent nodes at once (default 1)",
    )
    parser.add_argument("--cache-size", default="2GB", help="in-memory cache bound")
    parser.add_argument(
        "--disk-cache", action="store_true", help="also keep node outputs on disk across processes"
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="disk cache folder (default: the user cache folder)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    batch = parser.add_argument_group("batches (one run per item)")
    batch.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NODE.INPUT=SPEC",
        help="sweep an input over a list (1,2,3), a range (1..16) or the lines "
        "of a file (@prompts.txt); several form a grid",
    )
    batch.add_argument("--zip", action="store_true", help="pair sweeps up instead of a grid")
    batch.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run items in N worker processes on this machine",
    )
    batch.add_argument(
        "--cluster", metavar="ADDRESS", help="run items on a Dask cluster (tcp://scheduler:8786)"
    )
    batch.add_argument("--grid", metavar="PNG", help="write a labelled contact sheet")
    batch.add_argument(
        "--manifest", metavar="FILE", help="manifest path (default: OUTPUT_DIR/manifest.jsonl)"
    )
    batch.add_argument(
        "--resume", metavar="MANIFEST", help="run only the items a manifest lacks or that failed"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def load_workflow(args: argparse.Namespace, registry: Registry | None = None) -> dict[str, Any]:
    """The workflow named on the command line with --set and --checkpoint applied."""
    path = Path(args.workflow) if args.workflow else default_workflow_path()
    workflow = read_workflow(path)
    apply_overrides(workflow, args.set, getattr(args, "checkpoint", None), registry)
    return workflow


def apply_overrides(
    workflow: dict[str, Any],
    sets: list[str],
    checkpoint: str | None,
    registry: Registry | None = None,
) -> None:
    """Apply `--set NODE.INPUT=VALUE`s, then `--checkpoint NAME` to every checkpoint input
    (found from the node types' declarations: see easel.core.roles)."""
    for item in sets:
        target, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected NODE.INPUT=VALUE")
        try:
            set_input(workflow, target, parse_value(text))
        except EditError as exc:
            raise UsageError(f"--set {exc}") from None
    if checkpoint:
        for node_id, name in checkpoint_inputs(workflow, registry or current_registry()):
            workflow["nodes"][node_id].setdefault("inputs", {})[name] = checkpoint


def is_batch(args: argparse.Namespace) -> bool:
    return bool(args.sweep or args.resume or args.cluster or args.workers > 1 or args.grid)


def run(args: argparse.Namespace) -> int:
    if is_batch(args):
        from easel.cli.batch_cmd import run_batch_command

        return run_batch_command(args)
    registry = make_registry(args)
    workflow = load_workflow(args, registry)
    executor = make_executor(args, registry)
    plan = executor.validate(workflow, args.target)
    printer = ProgressPrinter(quiet=args.quiet)
    token = CancelToken()
    try:
        result = executor.run(plan, on_event=printer, cancel=token, services={"workflow": workflow})
    except KeyboardInterrupt:
        token.cancel("interrupted")
        print("interrupted", file=sys.stderr)
        return 130
    files = [
        str(executor.output_dir / f)
        for ui in result.ui.values()
        if isinstance(ui, dict)
        for f in ui.get("files", [])
    ]
    if args.json:
        report = result.to_json()
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": report["status"],
                    "seconds": result.seconds,
                    "nodes": report["node_status"],
                    "ui": result.ui,
                    "files": files,
                    "errors": report["failures"],
                    "timings": report["timings"],
                },
                indent=2,
                default=str,
            )
        )
    else:
        for file in files:
            print(file)
    for failure in result.failures:
        print(f"error: {failure}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED
