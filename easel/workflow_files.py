"""Reading workflows from files or request bodies: Easel JSON, ComfyUI JSON, PNG metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from easel.core.graph import FORMAT, Problem, WorkflowError

DEFAULT_WORKFLOW = "text_to_image.json"


def project_workflows_dir() -> Path:
    """The bundled workflows: `workflows/` of a source checkout, else the installed copy."""
    source = Path(__file__).resolve().parent.parent / "workflows"
    if source.is_dir():
        return source
    return Path(str(resources.files("easel") / "_workflows"))


def default_workflow_path() -> Path:
    local = Path("workflows") / DEFAULT_WORKFLOW
    return local if local.is_file() else project_workflows_dir() / DEFAULT_WORKFLOW


def detect_format(data: Any) -> str:
    """"easel", "comfy-api", "comfy-ui" or "unknown"."""
    if not isinstance(data, Mapping):
        return "unknown"
    if data.get("format") == FORMAT or ("nodes" in data and isinstance(data["nodes"], Mapping)):
        return "easel"
    if isinstance(data.get("nodes"), list) and "links" in data:
        return "comfy-ui"
    if data and all(isinstance(v, Mapping) and "class_type" in v for v in data.values()):
        return "comfy-api"
    return "unknown"


def to_easel(data: Any) -> dict[str, Any]:
    """Any supported workflow dict as an Easel workflow dict (ComfyUI files are converted)."""
    kind = detect_format(data)
    if kind == "easel":
        return dict(data)
    if kind in ("comfy-api", "comfy-ui"):
        from easel.comfy import convert

        return convert.to_easel(data)
    raise WorkflowError([Problem(
        "not a workflow this tool reads: expected an Easel workflow "
        '({"format": "easel.workflow", ...}) or a ComfyUI workflow (API or UI format)'
    )])


def parse_text(text: str | bytes, name: str = "workflow") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError([Problem(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        )]) from None


def read_workflow(path: str | Path) -> dict[str, Any]:
    """Load a workflow file (.json in any supported format, or a .png with one embedded)."""
    file = Path(path)
    if not file.is_file():
        raise WorkflowError([Problem(f"no such workflow file: {file}")])
    if file.suffix.lower() == ".png":
        from easel.pngmeta import workflow_from_png

        return to_easel(workflow_from_png(file))
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorkflowError([Problem(f"{file} is not a text (JSON) or PNG file")]) from None
    return to_easel(parse_text(text, str(file)))
