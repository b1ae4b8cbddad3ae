"""Saved workflows (project ones read-only, the user's writable), conversion, PNG reading."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from easel.core.graph import WorkflowError, parse_workflow
from easel.server.bodies import BodyError, parse_json, read_bytes, read_file_part, read_json
from easel.server.routes_files import write_atomically
from easel.server.routes_runs import convert, workflow_problems
from easel.server.security import json_error
from easel.server.state import state
from easel.workflow_files import detect_format, project_workflows_dir

routes = web.RouteTableDef()
log = logging.getLogger("easel.server")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def workflow_name(raw: str) -> str | None:
    name = raw[:-5] if raw.lower().endswith(".json") else raw
    if not _NAME.fullmatch(name) or ".." in name or name.endswith((".", " ")):
        return None
    return name


def in_folder(folder: Path, file: Path) -> bool:
    """A file of `folder` itself: a link that leads elsewhere does not count."""
    try:
        return file.is_file() and file.resolve().parent == folder.resolve()
    except (OSError, RuntimeError):  # a link loop
        return False


def _folders(request: web.Request) -> list[tuple[str, Path]]:
    """Where to look, first match wins: the user's own folder, then the project's."""
    return [
        ("user", state(request).config.user_workflows_dir),
        ("project", project_workflows_dir()),
    ]


@routes.get("/api/workflows")
async def list_workflows(request: web.Request) -> web.Response:
    seen: dict[str, dict[str, Any]] = {}
    for source, folder in _folders(request):
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.json")):
            name = workflow_name(file.name)
            if name and name not in seen and in_folder(folder, file):
                seen[name] = {
                    "name": name,
                    "source": source,
                    "readonly": source == "project",
                    "modified": file.stat().st_mtime,
                }
    return web.json_response({"workflows": sorted(seen.values(), key=lambda w: w["name"])})


@routes.get("/api/workflows/{name}")
async def get_workflow(request: web.Request) -> web.Response:
    name = workflow_name(request.match_info["name"])
    if name is None:
        return json_error(400, "workflow names are letters, digits, spaces, '_', '-' and '.'")
    for source, folder in _folders(request):
        file = folder / f"{name}.json"
        if file.is_symlink() and not in_folder(folder, file):
            log.warning("refusing %s: a link that leaves %s", file, folder)
            return json_error(
                403,
                f"saved workflow {name!r} is a link to a file outside the "
                "workflows folder, which is not served",
            )
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return json_error(
                    500, f"saved workflow {name!r} ({source}) is not valid JSON: {exc}"
                )
            try:
                workflow = convert(data)
            except WorkflowError as exc:
                return workflow_problems(exc, state(request).config.private_roots())
            return web.json_response(workflow, headers={"X-Easel-Source": source})
    return json_error(404, f"no saved workflow named {name!r}")


@routes.put("/api/workflows/{name}")
async def save_workflow(request: web.Request) -> web.Response:
    st = state(request)
    name = workflow_name(request.match_info["name"])
    if name is None:
        return json_error(
            400,
            "workflow names are letters, digits, spaces, '_', '-' and '.' "
            "(at most 100, starting with a letter or digit)",
        )
    data = await read_json(request, st.config.max_body_bytes)
    if isinstance(data, dict) and isinstance(data.get("workflow"), dict):
        data = data["workflow"]
    try:
        workflow = parse_workflow(data).to_json()  # structure only: drafts may be incomplete
    except WorkflowError as exc:
        return workflow_problems(exc, state(request).config.private_roots())
    folder = st.config.user_workflows_dir
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(workflow, indent=2, ensure_ascii=False) + "\n"
    write_atomically(folder / f"{name}.json", text.encode("utf-8"))
    return web.json_response({"name": name, "source": "user", "readonly": False})


@routes.delete("/api/workflows/{name}")
async def delete_workflow(request: web.Request) -> web.Response:
    name = workflow_name(request.match_info["name"])
    if name is None:
        return json_error(400, "invalid workflow name")
    file = state(request).config.user_workflows_dir / f"{name}.json"
    if file.is_file() or file.is_symlink():
        file.unlink()  # a link is removed, never what it points to
        return web.json_response({"name": name, "deleted": True})
    if (project_workflows_dir() / f"{name}.json").is_file():
        return json_error(
            403,
            f"{name!r} is one of the project's workflows, which are "
            "read-only; save a copy under another name",
        )
    return json_error(404, f"no saved workflow named {name!r}")


@routes.post("/api/workflows/convert")
async def convert_workflow(request: web.Request) -> web.Response:
    """Any supported workflow JSON (Easel, ComfyUI API or UI format) as an Easel workflow."""
    data = await read_json(request, state(request).config.max_body_bytes)
    if isinstance(data, dict) and isinstance(data.get("workflow"), dict):
        data = data["workflow"]
    try:
        workflow = convert(data)
    except WorkflowError as exc:
        return workflow_problems(exc, state(request).config.private_roots())
    return web.json_response({"workflow": workflow, "from": detect_format(data)})


@routes.post("/api/workflows/from-file")
async def workflow_from_file(request: web.Request) -> web.Response:
    """The workflow in a dropped file: a PNG made by Easel or ComfyUI, or a JSON file."""
    config = state(request).config
    if request.content_type.startswith("multipart/"):
        filename, data = await read_file_part(request, config.max_upload_bytes)
    else:
        filename, data = "body", await read_bytes(request, config.max_upload_bytes)
    loop = asyncio.get_running_loop()
    try:
        if data.startswith(PNG_SIGNATURE):
            # Headers first (size, frames against the budget), then decode off the loop.
            problem = await loop.run_in_executor(None, png_budget_problem, data, config)
            if problem:
                return json_error(413, f"the image is {problem}")
            found, kind = await loop.run_in_executor(None, workflow_in_png, data), "png"
        else:
            try:
                found, kind = (
                    await loop.run_in_executor(None, parse_json, data, f"{filename[:100]!r}"),
                    "json",
                )
            except BodyError as exc:
                if b"{" not in data[:1024] and b"[" not in data[:1024]:
                    return json_error(415, f"{filename[:100]!r} is neither a PNG nor a JSON file")
                raise exc
        workflow = await loop.run_in_executor(None, convert, found)
    except WorkflowError as exc:
        return workflow_problems(exc, state(request).config.private_roots())
    return web.json_response({"workflow": workflow, "file": kind, "from": detect_format(found)})


def png_budget_problem(data: bytes, config: Any) -> str | None:
    """Why decoding this PNG would exceed the budget, from its headers alone."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            frames = int(getattr(image, "n_frames", 1) or 1)
    except Exception:  # unreadable: the metadata reader says so
        return None
    if width * height > config.max_upload_pixels:
        return (
            f"{width}x{height} = {width * height} pixels; the limit is {config.max_upload_pixels}"
        )
    return config.budget.problem(width, height, frames=frames)


def workflow_in_png(data: bytes) -> Any:
    """The workflow embedded in PNG bytes (Easel's own chunk, or ComfyUI's)."""
    from easel.pngmeta import workflow_from_png

    return workflow_from_png(data)
