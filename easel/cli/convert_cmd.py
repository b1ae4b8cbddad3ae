"""`easel convert comfy IN -o OUT.json`: write a ComfyUI workflow as an Easel workflow file."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from easel.cli.common import EXIT_OK, EXIT_USAGE, make_registry
from easel.comfy.convert import comfy_format, to_easel
from easel.core.graph import WorkflowError
from easel.core.plugins import plugin_comfy_nodes
from easel.core.roles import checkpoint_inputs
from easel.workflow_files import looks_like_image, parse_text


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert a ComfyUI workflow into an Easel workflow file",
        description="Convert a ComfyUI workflow (API or UI format JSON, or an image ComfyUI "
        "saved with its workflow) into an Easel workflow. Node ids are kept, so "
        "`--set 3.steps=4` still addresses ComfyUI node 3.",
    )
    parser.add_argument(
        "source_format",
        choices=["comfy"],
        metavar="comfy",
        help="the format of the input file (only 'comfy' for now)",
    )
    parser.add_argument(
        "input", metavar="IN", help="ComfyUI .json file, or a PNG/WebP made by ComfyUI"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.json",
        default="-",
        help="where to write the Easel workflow (default: standard output)",
    )
    parser.add_argument(
        "--checkpoint", metavar="NAME", help="make every checkpoint loader use model NAME"
    )
    parser.set_defaults(func=run)
    return parser


def convert_file(path: Path) -> tuple[dict[str, Any], str]:
    """(Easel workflow, description of the source) for a ComfyUI file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConvertError(f"cannot read {path}: {exc.strerror or exc}") from None
    if looks_like_image(data[:16]):
        from easel.pngmeta import embedded_workflows, workflow_from_png

        image = io.BytesIO(data)
        image.name = str(path)  # type: ignore[attr-defined]
        kinds = embedded_workflows(image)
        if not ({"comfy-api", "comfy-ui"} & set(kinds)):
            raise ConvertError(
                f"{path} carries no ComfyUI workflow (an image made by Easel "
                "needs no conversion: `easel run` reads it directly)"
            )
        image.seek(0)
        return workflow_from_png(image), "ComfyUI image metadata"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConvertError(f"{path} is neither JSON nor an image") from None
    parsed = parse_text(text, str(path))
    kind = comfy_format(parsed)
    if kind is None:
        if isinstance(parsed, dict) and parsed.get("format") == "easel.workflow":
            raise ConvertError(f"{path} is already an Easel workflow")
        raise ConvertError(
            f"{path} is not a ComfyUI workflow: expected the API format "
            '({"3": {"class_type": ..., "inputs": ...}}) or the UI format '
            '({"nodes": [...], "links": [...]})'
        )
    count = len(parsed["nodes"]) if kind == "ui" else len(parsed)
    return (
        to_easel(parsed, plugin_comfy_nodes()),
        f"{count} ComfyUI nodes ({kind.upper()} format)",
    )


class ConvertError(Exception):
    """The input cannot be converted; the message says why."""


def write_text_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step, so no half-written file is ever seen."""
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    source = Path(args.input)
    try:
        if not source.is_file():
            raise ConvertError(f"no such file: {source}")
        registry = make_registry(args, quiet=True)  # plugins may map ComfyUI node types
        workflow, described = convert_file(source)
        if args.checkpoint:
            for node_id, name in checkpoint_inputs(workflow, registry):
                workflow["nodes"][node_id].setdefault("inputs", {})[name] = args.checkpoint
        text = json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"
        if args.output == "-":
            sys.stdout.write(text)
        else:
            write_text_atomically(Path(args.output), text)
    except (ConvertError, WorkflowError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    where = "standard output" if args.output == "-" else args.output
    print(
        f"converted {described} into {len(workflow['nodes'])} Easel nodes: {where}", file=sys.stderr
    )
    return EXIT_OK
