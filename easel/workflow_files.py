"""Reading workflows from files or request bodies: Easel JSON, ComfyUI JSON, PNG metadata."""

from __future__ import annotations

import io
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
    """ "easel", "comfy-api", "comfy-ui" or "unknown"."""
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
        from easel.core.plugins import plugin_comfy_nodes

        return convert.to_easel(data, plugin_comfy_nodes())
    raise WorkflowError(
        [
            Problem(
                "not a workflow this tool reads: expected an Easel workflow "
                '({"format": "easel.workflow", ...}) or a ComfyUI workflow (API or UI format)'
            )
        ]
    )


def parse_text(text: str | bytes, name: str = "workflow") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            [
                Problem(
                    f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
                )
            ]
        ) from None
    except RecursionError:
        raise WorkflowError([Problem(f"{name} is nested too deeply to be a workflow")]) from None
    except ValueError as exc:  # an integer over Python's digit limit
        raise WorkflowError([Problem(f"{name} has a number that is too large: {exc}")]) from None


IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"RIFF", b"\xff\xd8\xff")  # PNG, WebP, JPEG


def looks_like_image(head: bytes) -> bool:
    """Whether the first bytes of a file are those of an image that may carry a workflow."""
    return head.startswith(IMAGE_SIGNATURES)


def read_workflow(path: str | Path) -> dict[str, Any]:
    """Load a workflow file (.json in any supported format, or a PNG with one embedded)."""
    file = Path(path)
    if not file.is_file():
        raise WorkflowError([Problem(f"no such workflow file: {file}")])
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise WorkflowError([Problem(f"cannot read {file}: {exc.strerror or exc}")]) from None
    return read_workflow_bytes(data, str(file))


def read_workflow_bytes(data: bytes, filename: str = "workflow") -> dict[str, Any]:
    """A workflow from a file's content (an upload, a dropped file): Easel or ComfyUI JSON,
    or an image made by Easel or ComfyUI with its workflow embedded."""
    if looks_like_image(data[:16]):
        from easel.pngmeta import workflow_from_png

        image = io.BytesIO(data)
        image.name = filename  # type: ignore[attr-defined]
        return to_easel(workflow_from_png(image))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WorkflowError(
            [Problem(f"{filename} is neither a JSON workflow nor an image with one embedded")]
        ) from None
    return to_easel(parse_text(text, filename))
